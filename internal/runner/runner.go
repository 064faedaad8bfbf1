// Package runner owns one crabbox run end to end, whatever provider hands
// out the machine: acquire or resolve the lease, the per-lease lock, the
// owner record, the sync (with its one retry), the environment, the remote
// command (streamed, interruptible, stopped remotely when needed), JUnit
// results, the release policy and the local run record.
//
// Commands build a Spec, call Run and render the Outcome; the runner writes
// the run's progress lines to Deps.Notes as they happen.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/envfwd"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/leaselock"
	"github.com/crabbox-dev/crabbox/internal/owner"
	"github.com/crabbox-dev/crabbox/internal/provider"
	"github.com/crabbox-dev/crabbox/internal/remotecmd"
	"github.com/crabbox-dev/crabbox/internal/runs"
	"github.com/crabbox-dev/crabbox/internal/sshx"
	"github.com/crabbox-dev/crabbox/internal/syncer"
)

// releaseTimeout bounds the release after a run.
const releaseTimeout = 5 * time.Minute

// Spec is one run as the user asked for it.
type Spec struct {
	// Ident names an existing lease (--id); "" acquires a fresh one.
	Ident string
	Slug  string // a fresh lease's slug ("" generates one)
	// Release policy inputs (see ShouldRelease).
	Keep, KeepOnFailure bool
	StopAfter           string // "", success, always, failure, never
	FreshWorkspace      bool   // never reuse a released machine
	Reclaim             bool
	RepoRoot            string
	// Subdir is where the command runs below the remote workdir (the local
	// working directory's path below the repository root).
	Subdir string
	Argv   []string
	Shell  bool // run the joined Argv through bash -lc
	NoSync bool
	// SyncOnly syncs and runs no command.
	SyncOnly bool
	// Preflight takes a snapshot of the machine after the sync, before the
	// command (remotecmd.PreflightScript), with PreflightTools' versions
	// besides git's and rsync's. Diagnostic only: it never fails the run.
	Preflight      bool
	PreflightTools []string
	// Sync is the sync's options; RepoRoot and Workdir are set by Run.
	Sync syncer.Options
	// Env is the forwarded environment (values never printed); the run's
	// CRABBOX_* variables are added to a copy.
	Env map[string]string
	// JUnit lists report paths to collect; ResultsAuto also collects the
	// usual names the command wrote.
	JUnit              []string
	ResultsAuto        bool
	FailOnTestFailures bool
	// Stdout and Stderr receive the command's streams (the run log gets a
	// copy).
	Stdout, Stderr io.Writer
}

// Deps are the services a run uses.
type Deps struct {
	Provider provider.Provider
	Tunnels  *sshx.Pool
	Runner   execx.Runner
	Runs     *runs.Store
	Owner    *owner.Checker
	StateDir string
	Now      func() time.Time
	// Notes receives the run's progress and warning lines.
	Notes io.Writer
	// Ready and Open are the provider's readiness hooks (they render
	// their own progress); EndProgress ends any progress the provider's
	// events started.
	Ready, Open provider.ReadyFunc
	EndProgress func(error)
}

// Outcome is what a run did.
type Outcome struct {
	RunID string
	// Exit is the process's exit code: the command's, or crabbox's own
	// for a failure before or around it.
	Exit  int
	State string // succeeded | failed | interrupted
	Lease *provider.Lease
	// Released is true when the lease was released after the run;
	// ReleaseErr says why a release that was due failed.
	Released   bool
	ReleaseErr error
	// Policy is the release policy in force (auto when --stop-after was
	// not given).
	Policy string
	// StopCommand releases the lease by hand ("" without a lease).
	StopCommand string
	// Timing is the --timing-json object.
	Timing map[string]any
	// Total is the run record's duration (release included).
	Total time.Duration
}

// run is one run in progress.
type run struct {
	d      Deps
	s      Spec
	runID  string
	rec    *runs.Run
	lease  *provider.Lease
	fresh  bool
	timing map[string]any
}

// Run runs s. The error is nil only when the run succeeded; its exit code
// (exitcode.Code) is the process's. The Outcome is filled either way.
func Run(ctx context.Context, d Deps, s Spec) (Outcome, error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.EndProgress == nil {
		d.EndProgress = func(error) {}
	}
	r := &run{d: d, s: s, runID: lease.NewRunID(), fresh: s.Ident == "",
		timing: map[string]any{"provider": d.Provider.Name()}}
	var err error
	r.rec, err = d.Runs.Start(runs.Record{
		ID: r.runID, Provider: d.Provider.Name(), RepoRoot: s.RepoRoot, Command: s.Argv, Shell: s.Shell, StartedAt: d.Now(),
	})
	if err != nil {
		return Outcome{RunID: r.runID, Exit: exitcode.Code(err), Timing: r.timing}, err
	}
	code, runErr := r.execute(ctx)
	return r.finish(code, runErr)
}

func (r *run) notef(format string, args ...any) {
	fmt.Fprintf(r.d.Notes, format+"\n", args...)
}

// execute acquires the lease, syncs and runs; it returns the remote exit
// code (or -1 when the command never ran) and an error for crabbox-side
// failures.
func (r *run) execute(ctx context.Context) (int, error) {
	d, s := r.d, r.s
	// The scan (manifest, fingerprint) runs after the lease: run beside the
	// provider's calls it competes for CPU and made warm runs slower on a
	// 2-core machine (measured).
	leaseStart := d.Now()
	var err error
	if r.fresh {
		r.lease, err = d.Provider.Acquire(ctx, provider.AcquireRequest{
			Slug: s.Slug, Keep: s.Keep, RepoRoot: s.RepoRoot, Reclaim: s.Reclaim, Ready: d.Ready,
			Reuse: !s.FreshWorkspace,
		})
	} else {
		r.lease, err = d.Provider.Resolve(ctx, provider.ResolveRequest{
			Ident: s.Ident, Mode: provider.Prepare, RepoRoot: s.RepoRoot, Reclaim: s.Reclaim, Ready: d.Ready, Open: d.Open,
		})
	}
	d.EndProgress(err)
	r.timing["leaseMs"] = d.Now().Sub(leaseStart).Milliseconds()
	if err != nil {
		return -1, err
	}
	l := r.lease
	sess, err := d.Tunnels.Get(l.Target)
	if err != nil {
		return -1, err
	}
	// One run at a time per lease: the sync and the command see a tree no
	// other run is changing.
	lock, err := leaselock.Acquire(ctx, d.StateDir, l.ID, func() {
		r.notef("waiting for lease %s: another crabbox run on this machine is using it", l.ID)
	})
	if err != nil {
		if ctx.Err() != nil {
			return exitcode.Interrupted, context.Canceled
		}
		return -1, err
	}
	defer lock.Release()
	// One owner across machines: refused (nothing changed) when another
	// state dir owns the machine or runs a command there, unless
	// --reclaim; otherwise this machine is recorded as the owner.
	// (A provider that keeps the record itself did so when it made the
	// lease ready.)
	if !provider.KeepsOwnerRecord(d.Provider) {
		if err := d.Owner.Claim(ctx, sess, l, s.Reclaim, func(ident string) string {
			return "`crabbox run --reclaim --id " + ident + " -- …`"
		}); err != nil {
			if l.Adopted {
				r.lease = nil // its claim is gone again: no "kept" hint
			}
			return -1, err
		}
	}
	machine, err := d.Owner.MachineID()
	if err != nil {
		return -1, err
	}
	repoName := syncer.RepoName(ctx, d.Runner, s.RepoRoot)
	workdir := syncer.WorkdirFor(l.Target.WorkRoot, l.ID, repoName)
	r.update(func(rec *runs.Record) {
		rec.LeaseID, rec.Slug, rec.Workspace, rec.Workdir = l.ID, l.Slug, l.Ref, workdir
	})
	r.timing["leaseId"], r.timing["slug"], r.timing["workdir"], r.timing["runId"] = l.ID, l.Slug, workdir, r.runID
	cwd := ""
	if s.Subdir != "" {
		cwd = " cwd=" + runs.Escape(runs.QuoteWord(s.Subdir))
		r.timing["cwd"] = s.Subdir
	}
	r.notef("run %s lease=%s slug=%s provider=%s workspace=%s ssh=%s@%s workdir=%s%s",
		r.runID, l.ID, dash(l.Slug), d.Provider.Name(), l.Ref, l.Target.User, l.Target.Host, workdir, cwd)

	if !s.NoSync {
		if err := r.sync(ctx, sess, workdir); err != nil {
			return -1, err
		}
	}
	if s.Preflight {
		r.preflight(ctx, sess, workdir)
		if ctx.Err() != nil {
			return exitcode.Interrupted, context.Canceled
		}
	}
	if s.SyncOnly {
		return 0, nil
	}

	vars := make(map[string]string, len(s.Env)+4)
	for k, v := range s.Env {
		vars[k] = v
	}
	vars["CRABBOX_LEASE_ID"], vars["CRABBOX_RUN_ID"], vars["CRABBOX_SLUG"] = l.ID, r.runID, l.Slug
	// The run's machine, in its environment: another machine's owner
	// check sees this run as in progress while it lives.
	vars["CRABBOX_MACHINE_ID"] = machine
	if names := envfwd.Names(vars); len(names) > 4 {
		r.notef("env forwarded: %s", strings.Join(names, ","))
	}
	rc := remotecmd.Render(remotecmd.Params{
		Workdir: workdir, Subdir: s.Subdir, RunID: r.runID, Argv: s.Argv, Shell: s.Shell || sshx.NeedsShell(s.Argv),
		ResultsAuto: s.ResultsAuto, Env: envfwd.Render(vars),
	})
	r.notef("running on %s %s", l.Workspace, runs.CommandLine(s.Argv, s.Shell))

	cmdStart := d.Now()
	logw := r.rec.Log()
	code, err := sess.Run(ctx, rc.Line, strings.NewReader(rc.Stdin), io.MultiWriter(s.Stdout, logw), io.MultiWriter(s.Stderr, logw))
	r.timing["commandMs"] = d.Now().Sub(cmdStart).Milliseconds()
	if ctx.Err() != nil {
		r.stopRemote(ctx, sess, rc.PIDFile, l.Workspace)
		return exitcode.Interrupted, context.Canceled
	}
	if err != nil && exitcode.Code(err) == exitcode.Transport {
		// ssh exits 255 both when the tunnel fails and when the command
		// itself exits 255; the wrapper leaves an exit file only in the
		// second case.
		if c, ok := commandExit(ctx, sess, rc.ExitFile); ok {
			code, err = c, nil
		}
	}
	if err != nil {
		if exitcode.Code(err) == exitcode.Transport {
			// The tunnel dropped mid-command, but the remote command runs on
			// (measured on a real Coder), and the lease lock is released
			// when this run returns: stop it so the next run never syncs
			// into a tree it is still using.
			if r.stopRemote(ctx, sess, rc.PIDFile, l.Workspace) {
				r.notef("stopped the remote command after the tunnel dropped")
			}
			return -1, fmt.Errorf("running the command on %s: %w; next: `crabbox status %s`, then rerun", l.Workspace, err, l.Ident())
		}
		return -1, err
	}
	if len(s.JUnit) > 0 || s.ResultsAuto {
		r.collectResults(ctx, sess, workdir, rc.Dir)
	}
	return code, nil
}

// sync sends the tree, retrying once over a new tunnel when the transport
// failed.
func (r *run) sync(ctx context.Context, sess *sshx.Session, workdir string) error {
	so := r.s.Sync
	so.RepoRoot, so.Workdir = r.s.RepoRoot, workdir
	if so.PrepareHook == "" {
		so.PrepareHook = remotecmd.ReapLeftovers
	}
	report := func(e syncer.Event) {
		if e.Kind != "phase" {
			fmt.Fprintln(r.d.Notes, e.Message)
		}
	}
	res, err := syncer.Sync(ctx, r.d.Runner, sess, so, report)
	if err != nil && exitcode.Code(err) == exitcode.Transport && ctx.Err() == nil {
		// The sync protocol is idempotent (the remote fingerprint is
		// dropped before anything changes), so a sync that lost its
		// transport is retried once over a fresh tunnel: the old master
		// may be stalled rather than gone, so it is closed first.
		r.notef("sync: %v; retrying once over a new tunnel", err)
		if cerr := sess.Close(); cerr != nil {
			r.notef("warning: closing the old tunnel: %v", cerr)
		}
		res, err = syncer.Sync(ctx, r.d.Runner, sess, so, report)
	}
	r.timing["syncMs"], r.timing["syncSkipped"], r.timing["syncPhases"] = res.Duration.Milliseconds(), res.Skipped, res.Phases
	r.update(func(rec *runs.Record) {
		rec.SyncSkipped = res.Skipped
		for _, p := range res.Phases {
			rec.Phases = append(rec.Phases, runs.Phase{Name: "sync." + p.Name, Ms: p.Ms, Skipped: p.Skipped, Reason: p.Reason})
		}
	})
	return err
}

// commandExit asks the machine whether the command wrote an exit file (it
// does only for its own exit 255), over the tunnel or a new one. ok is
// false when it did not or when the machine cannot be asked: then the 255
// was the transport's.
func commandExit(ctx context.Context, sess *sshx.Session, exitFile string) (int, bool) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	out, err := sess.Output(cctx, remotecmd.ExitStatusScript(exitFile))
	if err != nil {
		return 0, false
	}
	return remotecmd.ParseExitStatus(string(out))
}

// stopRemote stops the run's remote process group (interrupt, or a tunnel
// that dropped mid-command) with a context of its own: over the tunnel if
// it still works, else over a new one (one more try). It reports whether
// the stop went through.
func (r *run) stopRemote(ctx context.Context, sess *sshx.Session, pidFile, workspace string) bool {
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_, err := sess.Run(kctx, remotecmd.KillScript(pidFile), nil, nil, nil)
	if err != nil && kctx.Err() == nil {
		_, err = sess.Run(kctx, remotecmd.KillScript(pidFile), nil, nil, nil)
	}
	if err != nil {
		r.notef("warning: the remote command may still be running on %s (it ends when the machine stops): %v", workspace, err)
		return false
	}
	return true
}

// finish records the run, releases per policy and returns the outcome.
func (r *run) finish(code int, runErr error) (Outcome, error) {
	d, s := r.d, r.s
	interrupted := errors.Is(runErr, context.Canceled)
	exit := code
	switch {
	case interrupted:
		exit = exitcode.Interrupted
	case runErr != nil:
		exit = exitcode.Code(runErr)
	}
	if runErr == nil && exit == 0 && s.FailOnTestFailures {
		if rec := r.rec.Record(); rec.Results != nil && rec.Results.HasFailures() {
			r.notef("JUnit reports failures; exiting 1 (--fail-on-test-failures)")
			exit = 1
		}
	}
	state := "succeeded"
	switch {
	case interrupted:
		state = "interrupted"
	case exit != 0:
		state = "failed"
	}
	// The outcome is recorded before the release, so a kill during the
	// release leaves a finished record.
	if err := r.rec.Finish(state, exit); err != nil {
		r.notef("warning: recording run %s: %v", r.runID, err)
	}
	if rec := r.rec.Record(); rec.LogIncomplete {
		r.notef("warning: run %s: %s (the outcome is recorded)", r.runID, runs.LogIncompleteNote(&rec))
	}

	out := Outcome{RunID: r.runID, Exit: exit, State: state, Lease: r.lease, Timing: r.timing, Policy: s.StopAfter}
	if out.Policy == "" {
		out.Policy = "auto"
	}
	releaseStart := d.Now()
	if r.lease != nil && ShouldRelease(Policy{StopAfter: s.StopAfter, Fresh: r.fresh, Keep: s.Keep, KeepOnFailure: s.KeepOnFailure}, exit != 0 || runErr != nil) {
		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		// The tunnel is not needed to release the machine.
		if err := d.Tunnels.Close(); err != nil {
			r.notef("warning: closing ssh tunnel: %v", err)
		}
		_, out.ReleaseErr = d.Provider.Release(ctx, r.lease, provider.ReleaseRequest{})
		cancel()
		out.Released = out.ReleaseErr == nil
		r.notef("lease cleanup stopped=%t policy=%s lease=%s slug=%s", out.Released, out.Policy, r.lease.ID, dash(r.lease.Slug))
	}
	// The release joins the record as its last phase and the record's end
	// moves past it: history's duration and total= are one figure.
	if r.lease != nil {
		phase := runs.Phase{Name: "release", Ms: d.Now().Sub(releaseStart).Milliseconds()}
		switch {
		case out.ReleaseErr != nil:
			phase.Error = firstLine(out.ReleaseErr.Error())
		case !out.Released:
			phase.Skipped, phase.Reason = true, "lease kept"
		}
		if err := r.rec.AddFinalPhase(phase); err != nil {
			r.notef("warning: recording run %s: %v", r.runID, err)
		}
		out.StopCommand = provider.StopCommand(d.Provider, r.lease.Ident())
		r.timing["stopCommand"] = out.StopCommand
	}
	out.Total = r.rec.Record().Duration().Truncate(time.Millisecond)
	r.timing["totalMs"], r.timing["exitCode"], r.timing["runStatus"] = out.Total.Milliseconds(), exit, state
	r.timing["leaseStopped"] = out.Released
	if out.ReleaseErr != nil {
		r.timing["leaseStopError"] = out.ReleaseErr.Error()
	}
	switch {
	case interrupted:
		return out, exitcode.Errorf(exitcode.Interrupted, "interrupted; run %s recorded as interrupted", r.runID)
	case runErr != nil:
		return out, runErr
	case out.ReleaseErr != nil:
		return out, exitcode.Errorf(exitcode.Transport, "lease cleanup failed for %s: %v", r.lease.ID, out.ReleaseErr)
	case exit != 0:
		return out, exitcode.Silent(exit)
	}
	return out, nil
}

// update changes the run record; a failure to persist only warns (the run
// itself goes on).
func (r *run) update(fn func(*runs.Record)) {
	if err := r.rec.Update(fn); err != nil {
		r.notef("warning: recording run %s: %v", r.runID, err)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
