// Package fanout runs one sharded run (run --shards): every shard is one
// run through runner.Run, all at once, each on its own lease with its own
// tunnels; their output is prefixed per line ("[2/4] ") or grouped per
// shard; a parent run record keeps the shards (runs.ShardRef) and their
// merged JUnit; and one verdict comes back: 0 only when every shard
// passed, else the lowest-numbered failing shard's exit code.
//
// Every shard's run releases its own fresh lease (the runner's release
// policy, with a context of its own), on an interrupt and a failure too:
// fan-out adds no path that leaves a fresh machine running.
package fanout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/iostreams"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/results"
	"github.com/crabbox-dev/crabbox/internal/runner"
	"github.com/crabbox-dev/crabbox/internal/runs"
)

// Output modes.
const (
	OutputPrefixed = "prefixed" // every line as it comes, "[i/n] " first
	OutputGrouped  = "grouped"  // each shard's output whole when it ends
)

// Options are one sharded run.
type Options struct {
	// Specs are the shards' runs, in index order; Shard (Index, Total,
	// Items) and Argv are set by the caller; Stdout, Stderr, RunID and
	// Shard.Parent are set here.
	Specs []runner.Spec
	// Deps returns shard index's services (a provider and tunnels of its
	// own) writing its notes to notes; done is called after its run.
	Deps func(index int, notes io.Writer) (d runner.Deps, done func(), err error)
	// Command and Shell are the command as given (before items), recorded
	// in the parent record; RepoRoot and Provider likewise.
	Command  []string
	Shell    bool
	RepoRoot string
	Provider string
	Store    *runs.Store
	// Out and ErrOut receive the shards' stdout and stderr (and notes),
	// and the closing lines.
	Out, ErrOut io.Writer
	Output      string // OutputPrefixed ("" too) or OutputGrouped
	FailFast    bool
	// Notes, when set, are written to ErrOut and the parent log before
	// the shards start (the plan).
	Notes []string
	Now   func() time.Time
	// Run is runner.Run (tests substitute it).
	Run func(context.Context, runner.Deps, runner.Spec) (runner.Outcome, error)
}

// Shard is one shard's end.
type Shard struct {
	Index   int
	RunID   string
	Outcome runner.Outcome
	Err     error
	// Cancelled is set when --fail-fast stopped it after another shard
	// failed.
	Cancelled bool
	Results   *results.Summary
}

// Result is a sharded run's end.
type Result struct {
	ParentID string
	Exit     int
	State    string
	// Failing is the lowest-numbered failing shard's index (0 when none).
	Failing int
	Shards  []Shard
	Results *results.Summary // merged (nil when no shard had any)
	Total   time.Duration
}

// Run runs the shards and returns the verdict; the error is nil only when
// every shard passed, and its exit code is the verdict's.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Run == nil {
		o.Run = runner.Run
	}
	n := len(o.Specs)
	if n == 0 {
		return Result{Exit: exitcode.Usage}, exitcode.New(exitcode.Usage, ErrNoShards)
	}
	res := Result{ParentID: lease.NewRunID(), Shards: make([]Shard, n)}
	refs := make([]runs.ShardRef, n)
	for i := range o.Specs {
		res.Shards[i] = Shard{Index: i + 1, RunID: lease.NewRunID()}
		refs[i] = runs.ShardRef{Index: i + 1, RunID: res.Shards[i].RunID, State: runs.StatePending}
		if sh := o.Specs[i].Shard; sh != nil {
			refs[i].Items = len(sh.Items)
		}
	}
	start := o.Now()
	parent, err := o.Store.Start(runs.Record{ID: res.ParentID, Provider: o.Provider, RepoRoot: o.RepoRoot,
		Command: o.Command, Shell: o.Shell, StartedAt: start, Shards: refs})
	if err != nil {
		return Result{Exit: exitcode.Code(err)}, err
	}
	plog := parent.Log()
	var lines iostreams.Lines
	out, errOut := io.MultiWriter(o.Out, plog), io.MultiWriter(o.ErrOut, plog)
	say := func(format string, args ...any) {
		_ = lines.Write(errOut, []byte(fmt.Sprintf(format+"\n", args...)))
	}
	for _, l := range o.Notes {
		say("%s", l)
	}
	update := func(i int, fn func(*runs.ShardRef)) {
		if err := parent.Update(func(r *runs.Record) {
			if i < len(r.Shards) {
				fn(&r.Shards[i])
			}
		}); err != nil {
			say("warning: recording run %s: %v", res.ParentID, err)
		}
	}

	// fail-fast cancels the shards still running at the first failure;
	// an interrupt of ctx cancels every shard (each stops its command and
	// releases its fresh lease).
	ffCtx, cancelAll := context.WithCancel(ctx)
	defer cancelAll()
	var failedOnce sync.Once
	var wg sync.WaitGroup
	for i := range o.Specs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sh := &res.Shards[i]
			prefix := fmt.Sprintf("[%d/%d] ", i+1, n)
			notes := lines.Writer(errOut, prefix)
			var stdout, stderr io.Writer
			var so, se *iostreams.LineWriter
			var gout, gerr bytes.Buffer
			if o.Output == OutputGrouped {
				stdout, stderr = &gout, &gerr
			} else {
				so, se = lines.Writer(out, prefix), lines.Writer(errOut, prefix)
				stdout, stderr = so, se
			}
			spec := o.Specs[i]
			spec.RunID, spec.Stdout, spec.Stderr = sh.RunID, stdout, stderr
			if spec.Shard != nil {
				s := *spec.Shard
				s.Parent = res.ParentID
				spec.Shard = &s
			}
			update(i, func(r *runs.ShardRef) { r.State = runs.StateRunning })
			d, done, err := o.Deps(i+1, notes)
			if err == nil {
				d.Notes = notes
				sh.Outcome, sh.Err = o.Run(ffCtx, d, spec)
				done()
			} else {
				sh.Err = err
				sh.Outcome = runner.Outcome{Exit: exitcode.Code(err), State: runs.StateFailed}
			}
			if so != nil {
				_, _ = so.Flush(), se.Flush()
			}
			if o.Output == OutputGrouped {
				say("── shard %d/%d (%s, exit %d) ──", i+1, n, sh.Outcome.State, sh.Outcome.Exit)
				_ = lines.Write(out, gout.Bytes())
				_ = lines.Write(errOut, gerr.Bytes())
			}
			if ffCtx.Err() != nil && ctx.Err() == nil && sh.Outcome.State == runs.StateInterrupted {
				sh.Cancelled = true
			}
			if rec, err := o.Store.Get(sh.RunID); err == nil {
				sh.Results = rec.Results
			}
			ref := shardRef(i+1, sh)
			update(i, func(r *runs.ShardRef) { *r = ref })
			if o.FailFast && sh.Outcome.State == runs.StateFailed {
				failedOnce.Do(func() {
					say("shard %d/%d failed (exit %d); --fail-fast: stopping the other shards", i+1, n, sh.Outcome.Exit)
					cancelAll()
				})
			}
		}(i)
	}
	wg.Wait()

	res.verdict(ctx)
	var sums []results.Summary
	for _, sh := range res.Shards {
		if sh.Results != nil {
			sums = append(sums, *sh.Results)
		}
	}
	if len(sums) > 0 {
		m := results.Merge(sums...)
		res.Results = &m
	}
	if err := parent.Update(func(r *runs.Record) {
		r.Results = res.Results
		if res.Failing > 0 {
			r.FailedStep = res.Shards[res.Failing-1].Outcome.FailedStep
		}
	}); err != nil {
		say("warning: recording run %s: %v", res.ParentID, err)
	}
	// The closing lines go to the parent's log too, before it is closed.
	res.Total = o.Now().Sub(start).Truncate(time.Millisecond)
	for _, l := range res.Summary(n) {
		say("%s", l)
	}
	if err := parent.Finish(res.State, res.Exit); err != nil {
		fmt.Fprintf(o.ErrOut, "warning: recording run %s: %v\n", res.ParentID, err)
	}
	switch {
	case res.State == runs.StateInterrupted:
		return res, exitcode.Errorf(exitcode.Interrupted, "interrupted; sharded run %s recorded as interrupted", res.ParentID)
	case res.Exit != 0:
		return res, exitcode.Silent(res.Exit)
	}
	return res, nil
}

func shardRef(index int, sh *Shard) runs.ShardRef {
	o := sh.Outcome
	ref := runs.ShardRef{Index: index, RunID: sh.RunID, State: o.State, FailedStep: o.FailedStep,
		LeaseMs: msOf(o.Timing["leaseMs"]), SyncMs: msOf(o.Timing["syncMs"]), CommandMs: msOf(o.Timing["commandMs"]),
		WallMs: o.Total.Milliseconds()}
	if ref.State == "" {
		ref.State = runs.StateFailed
	}
	exit := o.Exit
	ref.Exit = &exit
	if l := o.Lease; l != nil {
		ref.LeaseID, ref.Workspace = l.ID, l.Ref
	}
	return ref
}

func msOf(v any) int64 {
	n, _ := v.(int64)
	return n
}

// verdict sets Exit, State and Failing: interrupted when ctx was (or a
// shard was interrupted without --fail-fast asking); else the
// lowest-numbered failed shard's exit; else 0.
func (r *Result) verdict(ctx context.Context) {
	r.State, r.Exit = runs.StateSucceeded, 0
	if ctx.Err() != nil {
		r.State, r.Exit = runs.StateInterrupted, exitcode.Interrupted
		return
	}
	for _, sh := range r.Shards {
		if sh.Outcome.State == runs.StateFailed || (sh.Outcome.Exit != 0 && !sh.Cancelled) {
			r.Failing = sh.Index
			r.State, r.Exit = runs.StateFailed, sh.Outcome.Exit
			if r.Exit == 0 {
				r.Exit = exitcode.Failure
			}
			return
		}
	}
}

// Summary is the closing lines: one timing line per shard (so imbalance
// shows), each failed shard's digest, and the verdict naming the failing
// shard.
func (r Result) Summary(n int) []string {
	var out []string
	counts := map[string]int{}
	for _, sh := range r.Shards {
		o := sh.Outcome
		state := o.State
		if sh.Cancelled {
			state = "cancelled"
		}
		counts[state]++
		leaseID := "-"
		if o.Lease != nil {
			leaseID = o.Lease.ID
		}
		out = append(out, fmt.Sprintf("shard %d/%d run=%s lease=%s state=%s exit=%d timing lease=%s sync=%s command=%s total=%s",
			sh.Index, n, sh.RunID, leaseID, state, o.Exit, dur(o.Timing["leaseMs"]), dur(o.Timing["syncMs"]), dur(o.Timing["commandMs"]),
			o.Total.Round(time.Millisecond)))
	}
	for _, sh := range r.Shards {
		o := sh.Outcome
		p := fmt.Sprintf("[%d/%d] ", sh.Index, n)
		if o.Lease != nil && !o.Released && o.StopCommand != "" {
			out = append(out, fmt.Sprintf("%slease %s kept; release it with: %s", p, o.Lease.ID, o.StopCommand))
		}
		if o.Digest != nil && !sh.Cancelled {
			for _, l := range o.Digest.Lines() {
				out = append(out, p+l)
			}
		} else if sh.Err != nil && o.Digest == nil && !sh.Cancelled && o.State != runs.StateSucceeded {
			out = append(out, p+"error: "+execx.FirstLine(sh.Err.Error()))
		}
	}
	if r.Results != nil {
		out = append(out, r.Results.Line()+" (all shards; crabbox results "+r.ParentID+")")
	}
	var parts []string
	for _, s := range []string{runs.StateSucceeded, runs.StateFailed, runs.StateInterrupted, "cancelled"} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", s, counts[s]))
		}
	}
	line := fmt.Sprintf("sharded run summary run=%s shards=%d %s exit=%d total=%s", r.ParentID, n, strings.Join(parts, " "), r.Exit, r.Total.Round(time.Millisecond))
	if r.Failing > 0 {
		sh := r.Shards[r.Failing-1]
		why := sh.Outcome.FailedStep
		if why == "" {
			why = "failed"
		}
		line += fmt.Sprintf(" failing=shard %d/%d (%s, run %s; crabbox logs %s --shard %d)", sh.Index, n, why, sh.RunID, r.ParentID, sh.Index)
	}
	return append(out, line)
}

func dur(v any) string {
	n, ok := v.(int64)
	if !ok {
		return "-"
	}
	return (time.Duration(n) * time.Millisecond).String()
}

// ErrNoShards is returned for an empty plan.
var ErrNoShards = errors.New("no shards to run")
