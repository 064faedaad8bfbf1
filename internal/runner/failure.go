package runner

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/bundle"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/results"
	"github.com/crabbox-dev/crabbox/internal/runs"
)

// The steps of a run, as a failed run's record (FailedStep) and digest
// name them.
const (
	StepLease     = "lease"     // acquire/resolve, the lease lock, the owner record
	StepSync      = "sync"      // the sync
	StepCommand   = "command"   // the command (its exit code, or the tunnel under it)
	StepResults   = "results"   // JUnit collection, --fail-on-test-failures
	StepArtifacts = "artifacts" // artifact transfer, --require-artifact, --download
	StepRelease   = "release"   // the release after the run
)

// digestTests is how many failing tests a digest names.
const digestTests = 3

// Digest is the short account of a failed or interrupted run printed
// after its summary: where it stopped, its exit code, the first failing
// tests, the bundle, and the next commands that work for this run.
type Digest struct {
	RunID string
	State string // failed | interrupted
	Step  string
	Exit  int
	// Tests are the first failing tests ("suite name: message"); More how
	// many others failed.
	Tests []string
	More  int
	// Bundle is the failure bundle's path ("" when none was written).
	Bundle string
	Next   []string
}

// Lines renders the digest.
func (d Digest) Lines() []string {
	verb := "failed in step"
	if d.State == "interrupted" {
		verb = "interrupted in step"
	}
	lines := []string{"run " + d.RunID + " " + verb + " " + d.Step + " (exit " + itoa(d.Exit) + ")"}
	for _, t := range d.Tests {
		lines = append(lines, "  failing test: "+t)
	}
	if d.More > 0 {
		lines = append(lines, "  and "+itoa(d.More)+" more failing tests")
	}
	if d.Bundle != "" {
		lines = append(lines, "  failure bundle: "+d.Bundle)
	}
	for _, n := range d.Next {
		lines = append(lines, "  next: "+n)
	}
	return lines
}

func itoa(n int) string { return strconv.Itoa(n) }

// failedStep is the step a run that ended with exit, runErr and the
// command's code stopped in ("" when it succeeded).
func (r *run) failedStep(code, exit int, runErr error, interrupted bool) string {
	switch {
	case interrupted || runErr != nil:
		return r.step
	case code != 0:
		return StepCommand
	case exit != 0:
		return StepResults
	}
	return ""
}

// NextSteps are the commands a digest offers: each one works for this
// run. logs always (the record exists); results only with results;
// artifacts only with artifacts; ssh only while the lease is held (kept,
// not released, and not refused while leasing).
func NextSteps(rec runs.Record, out Outcome, step string) []string {
	next := []string{"crabbox logs " + rec.ID}
	if rec.Results != nil {
		next = append(next, "crabbox results "+rec.ID)
	}
	if len(rec.Artifacts) > 0 {
		next = append(next, "crabbox artifacts "+rec.ID)
	}
	if l := out.Lease; l != nil && !out.Released && out.ReleaseErr == nil && step != StepLease {
		next = append(next, "crabbox ssh --provider "+rec.Provider+" --id "+l.Ident())
	}
	return next
}

// failingTests are the first n failed tests of sum and how many more
// failed.
func failingTests(sum *results.Summary, n int) ([]string, int) {
	if sum == nil {
		return nil, 0
	}
	var out []string
	for _, f := range sum.Failed {
		if len(out) == n {
			break
		}
		name := f.Name
		if name == "" {
			name = f.Classname
		}
		t := strings.TrimSpace(f.Suite + " " + name)
		if msg := results.FirstLine(f.Message); msg != "" {
			t += ": " + msg
		}
		out = append(out, runs.Escape(t))
	}
	return out, sum.Failures + sum.Errors - len(out)
}

// writeBundle writes the run's failure bundle (released: the lease was
// released after the run). A failure only warns; it returns the path
// written ("" when none).
func (r *run) writeBundle(step string, released bool) string {
	rec := r.rec.Record()
	path := r.d.Runs.BundlePath(r.runID)
	raw, _ := os.ReadFile(filepath.Join(r.rec.Dir(), runs.RecordName))
	tail, truncated, _ := r.d.Runs.ReadLog(r.runID, bundle.LogTailLines)
	names := r.envNames
	if names == nil {
		for k := range r.s.Env {
			names = append(names, k)
		}
		sort.Strings(names)
	}
	err := bundle.Write(path, bundle.Input{
		Record: rec, RecordJSON: raw, FailedStep: step, EnvNames: names, Timing: r.timing,
		LogTail: tail, LogTruncated: truncated, Git: gitState(r.d.Runner, r.s.RepoRoot), Released: released,
		Created: r.d.Now(), Redact: bundle.NewRedactor(r.s.Env),
	})
	if err != nil {
		r.notef("warning: run %s: %v", r.runID, err)
		return ""
	}
	return path
}

// maxDirty bounds the dirty-file list of a bundle.
const maxDirty = 500

// gitState is the checkout's HEAD and `git status --porcelain` entries.
func gitState(x execx.Runner, repo string) bundle.Git {
	var g bundle.Git
	if repo == "" {
		g.Error = "no repository"
		return g
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := x.Run(ctx, execx.Cmd{Name: "git", Args: []string{"-C", repo, "rev-parse", "HEAD"}, Timeout: 10 * time.Second})
	if err != nil {
		g.Error = "git rev-parse HEAD: " + execx.FirstLine(err.Error())
	} else {
		g.Head = strings.TrimSpace(string(res.Stdout))
	}
	res, err = x.Run(ctx, execx.Cmd{Name: "git", Args: []string{"--no-optional-locks", "-C", repo, "-c", "core.fsmonitor=false", "status", "--porcelain=v1", "-z"}, Timeout: 10 * time.Second})
	if err != nil {
		if g.Error == "" {
			g.Error = "git status: " + execx.FirstLine(err.Error())
		}
		return g
	}
	entries := strings.Split(string(res.Stdout), "\x00")
	for i := 0; i < len(entries); i++ {
		e := entries[i]
		if len(e) < 4 {
			continue
		}
		if e[0] == 'R' || e[0] == 'C' { // "R  new\0old"
			if i+1 < len(entries) {
				e += " <- " + entries[i+1]
				i++
			}
		}
		if len(g.Dirty) == maxDirty {
			g.DirtyTruncated++
			continue
		}
		g.Dirty = append(g.Dirty, runs.Escape(e))
	}
	return g
}
