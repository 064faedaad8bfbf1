package runner

import (
	"bytes"
	"context"
	"strconv"
	"strings"

	"github.com/crabbox-dev/crabbox/internal/remotecmd"
	"github.com/crabbox-dev/crabbox/internal/results"
	"github.com/crabbox-dev/crabbox/internal/runs"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// collectResults fetches JUnit files in one round trip and parses them.
// Paths are relative to the command's directory; the machine refuses any
// that resolves outside the workdir.
func (r *run) collectResults(ctx context.Context, sess *sshx.Session, workdir, dir string) {
	script := remotecmd.JUnitScript(workdir, dir, r.runID, r.s.JUnit, r.s.ResultsAuto)
	var out, errb bytes.Buffer
	_, err := sess.Run(ctx, script, nil, &out, &errb)
	if retriable(ctx, err) {
		// The script only reads: it is run again over a new tunnel.
		if ns, rerr := r.newTunnel(ctx, sess, "results", err); rerr != nil {
			err = rerr
		} else {
			out.Reset()
			errb.Reset()
			_, err = ns.Run(ctx, script, nil, &out, &errb)
		}
	}
	if err != nil {
		r.notef("warning: collecting test results: %v", err)
		return
	}
	for _, line := range strings.Split(errb.String(), "\n") {
		if msg, ok := strings.CutPrefix(strings.TrimSpace(line), "crabbox: "); ok {
			r.notef("warning: results: %s", runs.Escape(msg))
		}
	}
	sums, warnings := parseReports(out.Bytes())
	for _, w := range warnings {
		r.notef("warning: %s", w)
	}
	if len(sums) == 0 {
		r.notef("results: no JUnit reports found")
		return
	}
	sum := results.Merge(sums...)
	r.update(func(rec *runs.Record) { rec.Results = &sum })
	r.notef("%s", sum.Line())
}

// parseReports reads the JUnit script's output: NUL name NUL size NUL
// bytes, repeated.
func parseReports(data []byte) (sums []results.Summary, warnings []string) {
	for len(data) > 0 {
		name, rest, ok := bytes.Cut(data, []byte{0})
		if !ok {
			break
		}
		sizeB, rest, ok := bytes.Cut(rest, []byte{0})
		n, err := strconv.Atoi(strings.TrimSpace(string(sizeB)))
		if !ok || err != nil || n < 0 || n > len(rest) {
			break
		}
		s, err := results.ParseJUnit(string(name), rest[:n])
		if err != nil {
			warnings = append(warnings, runs.Escape(string(name))+": "+err.Error())
		} else {
			sums = append(sums, s)
		}
		data = rest[n:]
	}
	return sums, warnings
}
