package runner

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/artifacts"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/runs"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// fetchTimeout bounds one artifact transfer.
const fetchTimeout = 30 * time.Minute

// ArtifactSpec is what a run fetches after its command.
type ArtifactSpec struct {
	// Globs (--artifact-glob) are fetched whether the command passed or
	// failed; Require (--require-artifact) too, and a command that exited
	// 0 fails when one of them matched nothing. Patterns are relative to
	// the remote workdir (artifacts.CheckGlob).
	Globs, Require []string
	// Downloads (--download) are written after a successful command; Local
	// is absolute.
	Downloads []artifacts.Download
	// MaxFiles and MaxBytes are artifacts.maxFiles and artifacts.maxBytes
	// (the package defaults when 0).
	MaxFiles int
	MaxBytes int64
}

func (a ArtifactSpec) wanted() bool {
	return len(a.Globs)+len(a.Require)+len(a.Downloads) > 0
}

// testsFail reports whether --fail-on-test-failures turns a passing
// command into a failed run.
func (r *run) testsFail() bool {
	rec := r.rec.Record()
	return r.s.FailOnTestFailures && rec.Results != nil && rec.Results.HasFailures()
}

// fetchArtifacts runs the one transfer after the command (passed: it
// exited 0 and wrote its captures): the artifacts into the run's record
// dir, and, when the command succeeded,
// the --require-artifact check and the downloads. A transfer that fails
// only warns unless the run needs it (a successful command with
// --require-artifact or --download: then exit 7); a missing required
// artifact or a download that could not be written fails the run (exit 1).
func (r *run) fetchArtifacts(ctx context.Context, sess *sshx.Session, workdir string, passed bool) error {
	a := r.s.Artifacts
	success := passed && !r.testsFail()
	req := artifacts.Request{Workdir: workdir, Globs: a.Globs, MaxFiles: a.MaxFiles, MaxBytes: a.MaxBytes,
		Dir: r.d.Runs.ArtifactsDir(r.runID)}
	if req.MaxFiles <= 0 {
		req.MaxFiles = artifacts.DefaultMaxFiles
	}
	if req.MaxBytes <= 0 {
		req.MaxBytes = artifacts.DefaultMaxBytes
	}
	if success {
		req.Require, req.Downloads = a.Require, a.Downloads
	} else {
		// A failed command's required files are still worth having; they
		// are not checked.
		req.Globs = append(append([]string(nil), a.Globs...), a.Require...)
	}
	if len(req.Globs)+len(req.Require)+len(req.Downloads) == 0 {
		return nil
	}
	start := r.d.Now()
	fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	res, err := artifacts.Fetch(fctx, sess, req)
	if retriable(fctx, err) {
		// The transfer only reads the workdir, so it is repeated whole
		// into an empty dir: a tunnel that stalled under load (its
		// keepalives unanswered) must not cost the run its artifacts.
		if ns, rerr := r.newTunnel(fctx, sess, "artifacts", err); rerr != nil {
			r.notef("warning: artifacts: %v", rerr)
		} else if rerr := os.RemoveAll(req.Dir); rerr != nil {
			r.notef("warning: artifacts: %v", rerr)
		} else {
			res, err = artifacts.Fetch(fctx, ns, req)
		}
	}
	cancel()
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		err = exitcode.Errorf(exitcode.Transport, "fetching artifacts: timed out after %s", fetchTimeout)
	}
	ms := r.d.Now().Sub(start).Milliseconds()
	r.timing["artifactsMs"], r.timing["artifacts"] = ms, len(res.Artifacts)
	phase := runs.Phase{Name: "artifacts", Ms: ms}
	if err != nil {
		phase.Error = execx.FirstLine(err.Error())
	}
	r.update(func(rec *runs.Record) {
		rec.Artifacts = res.Artifacts
		rec.Phases = append(rec.Phases, phase)
	})
	for _, n := range res.Notes {
		r.notef("artifacts: %s", n)
	}
	if res.MoreNotes > 0 {
		r.notef("artifacts: %d more matches refused or skipped", res.MoreNotes)
	}
	for _, w := range res.Warnings {
		r.notef("warning: artifacts: %s", w)
	}
	if res.Skipped > 0 {
		r.notef("warning: artifacts: fetched %d of %d matching files; %d (%d bytes) left out: over artifacts.maxFiles=%d or artifacts.maxBytes=%d; raise them (CRABBOX_ARTIFACTS_MAX_FILES, CRABBOX_ARTIFACTS_MAX_BYTES or the config) or narrow the patterns",
			res.Matched-res.Skipped, res.Matched, res.Skipped, res.SkippedBytes, req.MaxFiles, req.MaxBytes)
	}
	if len(res.Artifacts) > 0 {
		r.notef("artifacts: %s (%d bytes) kept; list them with `crabbox artifacts %s`", files(len(res.Artifacts)), runs.ArtifactBytes(res.Artifacts), r.runID)
	} else if len(req.Globs)+len(req.Require) > 0 && err == nil {
		r.notef("artifacts: no file matched %s", strings.Join(append(append([]string(nil), req.Globs...), req.Require...), " "))
	}
	if ctx.Err() != nil {
		return context.Canceled
	}
	if err != nil {
		if success && len(a.Require)+len(a.Downloads) > 0 {
			return err
		}
		r.notef("warning: %v", err)
		return nil
	}
	if !success {
		return nil
	}
	if missing := res.MissingRequired(a.Require); len(missing) > 0 {
		for i := range missing {
			missing[i] = "--require-artifact " + runs.Escape(missing[i])
		}
		return exitcode.Errorf(exitcode.Failure, "%s matched no regular file in the remote workdir; the run fails (exit 1)", strings.Join(missing, ", "))
	}
	var failed []string
	for _, d := range res.Downloads {
		if d.Err != "" {
			failed = append(failed, runs.Escape(d.Flag())+": "+d.Err)
			continue
		}
		r.notef("downloaded %s to %s (%d bytes)", runs.Escape(d.Remote), runs.Escape(d.Path), d.Size)
	}
	if len(failed) > 0 {
		return exitcode.Errorf(exitcode.Failure, "%s; the run fails (exit 1)", strings.Join(failed, "; "))
	}
	if got := len(res.Downloads); got != len(a.Downloads) {
		return exitcode.Errorf(exitcode.Transport, "fetching artifacts: %d of %d downloads answered", got, len(a.Downloads))
	}
	return nil
}

func files(n int) string {
	if n == 1 {
		return "1 file"
	}
	return strconv.Itoa(n) + " files"
}
