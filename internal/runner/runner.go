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
	"strconv"
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
	// Artifacts are fetched after the command (artifacts.go).
	Artifacts ArtifactSpec
	// Stdout and Stderr receive the command's streams (the run log gets a
	// copy).
	Stdout, Stderr io.Writer
	// Stdin, when non-nil, is forwarded to the command, EOF included
	// (crabbox's stdin when it is not a terminal); nil gives the command
	// /dev/null.
	Stdin io.Reader
	// Script, when non-nil, is run instead of a command (uploaded under the
	// workdir's .crabbox/scripts/), with Argv as its arguments; Shell is
	// ignored.
	Script *Script
	// CaptureStdout and CaptureStderr, when set, are local files (0600,
	// put in place when the command ends) that receive that remote stream's
	// raw bytes instead of Stdout/Stderr and the run log; the log notes the
	// capture and its size. See LocalOutputPaths and CheckLocalOutputs.
	CaptureStdout, CaptureStderr string
	// Shard, when set, makes this run one shard of a sharded run (run
	// --shards): recorded in its record, and the command gets
	// CRABBOX_SHARD_INDEX and CRABBOX_SHARD_TOTAL, and with Items
	// CRABBOX_SHARD_ITEMS, the remote file holding them one per line.
	Shard *runs.Shard
	// RunID, when set, is the run's ID (lease.NewRunID's form), chosen by
	// a caller that names the run before it starts (a sharded run's
	// parent record); "" makes a new one.
	RunID string
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
	// FailedStep is where a failed or interrupted run stopped (Step*);
	// Bundle its failure bundle ("" when none); Digest what to print about
	// it (nil when the run succeeded).
	FailedStep string
	Bundle     string
	Digest     *Digest
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
	caps   []*capture
	// step is the step in progress (Step*); envNames the variables the
	// command got (nil before they are known).
	step     string
	envNames []string
	// envAlways is how many of envNames every such run has (not worth
	// a note).
	envAlways int
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
	id := s.RunID
	if id == "" {
		id = lease.NewRunID()
	}
	r := &run{d: d, s: s, runID: id, fresh: s.Ident == "", step: StepLease,
		timing: map[string]any{"provider": d.Provider.Name()}}
	// Local outputs are checked and made before anything runs.
	var err error
	if err = CheckLocalOutputs(LocalOutputPaths(s)); err == nil {
		r.caps, err = openCaptures(s)
	}
	if err != nil {
		return Outcome{RunID: r.runID, Exit: exitcode.Code(err), Timing: r.timing}, err
	}
	defer abortCaptures(r.caps) // a no-op for the committed ones
	r.rec, err = d.Runs.Start(runs.Record{
		ID: r.runID, Provider: d.Provider.Name(), RepoRoot: s.RepoRoot, Command: s.commandWords(), Shell: s.Shell && s.Script == nil, StartedAt: d.Now(),
		Shard: s.Shard,
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
		r.lease, err = r.resolve(ctx, false)
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
	machine, err := d.Owner.MachineID()
	if err != nil {
		return -1, err
	}
	repoName := syncer.RepoName(ctx, d.Runner, s.RepoRoot)
	workdir := syncer.WorkdirFor(l.Target.WorkRoot, l.ID, repoName)
	// One owner across machines: refused (nothing changed) when another
	// state dir owns the machine or runs a command there, unless
	// --reclaim; otherwise this machine is recorded as the owner.
	// (A provider that keeps the record itself did so when it made the
	// lease ready.)
	ownerDone := provider.KeepsOwnerRecord(d.Provider)

	// A warm run whose tree did not change needs one round trip: the owner
	// check, the skip check and the command together (fast.go).
	var plan *syncer.Plan
	announced := false
	announce := func() {
		if !announced {
			announced = true
			r.announce(r.lease, workdir)
		}
	}
	if !s.SyncOnly && !s.Preflight {
		a := fastAttempt{announce: announce}
		if !s.NoSync {
			// The scan runs while the attempt's ssh starts and the machine
			// runs the checks before the skip check, which then waits for
			// the fingerprint on stdin.
			a.scan = startScan(ctx, r, r.syncOptions(workdir))
			a.onSkip = func(check time.Duration) {
				r.recordSync(syncer.SkippedRemotely(a.scan.wait(), check, r.syncReport), nil)
			}
		}
		if !ownerDone {
			if a.ownerScript, err = d.Owner.Script(l, s.Reclaim, true); err != nil {
				return -1, err
			}
		}
		verdict, code, err := r.fast(ctx, &sess, workdir, r.render(l, workdir, machine), a)
		switch verdict {
		case fastRan, fastFailed:
			return code, err
		case fastSyncNeeded:
			ownerDone = true
		}
		if a.scan != nil {
			plan = a.scan.wait()
		}
		if l != r.lease { // resolved again
			l = r.lease
			workdir = syncer.WorkdirFor(l.Target.WorkRoot, l.ID, repoName)
		}
	}
	if l.ReadyUnchecked {
		// No fast attempt carried the ready check the fast-path resolve
		// left to this run: it goes first, alone.
		if sess, err = r.checkReady(ctx, sess); err != nil {
			return -1, err
		}
		l = r.lease
		workdir = syncer.WorkdirFor(l.Target.WorkRoot, l.ID, repoName)
	}
	if !ownerDone {
		claim := func() error {
			return d.Owner.Claim(ctx, sess, l, s.Reclaim, takeOverRun)
		}
		err := claim()
		if err != nil && r.mayReconfirm(ctx, err) {
			if sess, err = r.reconfirm(ctx, sess, err); err == nil {
				l = r.lease
				workdir = syncer.WorkdirFor(l.Target.WorkRoot, l.ID, repoName)
				err = claim()
			}
		}
		if err != nil {
			if l.Adopted {
				r.lease = nil // its claim is gone again: no "kept" hint
			}
			return -1, err
		}
	}
	announce()

	if !s.NoSync {
		r.step = StepSync
		if sess, err = r.sync(ctx, sess, workdir, plan); err != nil {
			return -1, err
		}
		l = r.lease
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
	rc := remotecmd.Render(r.render(l, workdir, machine))
	r.announceCommand(l)
	r.step = StepCommand
	code, capErr, err, _ := r.runCommand(ctx, sess, rc, rc.Line, func(w io.Writer) error {
		_, err := io.WriteString(w, rc.Stdin)
		return err
	}, nil)
	if err != nil {
		return code, err
	}
	return r.afterCommand(ctx, sess, workdir, rc, code, capErr)
}

// announce records where the run goes and prints the run line.
func (r *run) announce(l *provider.Lease, workdir string) {
	s := r.s
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
		r.runID, l.ID, dash(l.Slug), r.d.Provider.Name(), l.Ref, l.Target.User, l.Target.Host, workdir, cwd)
}

// render is what the run's remote command is rendered from (the
// environment names are kept for the failure bundle).
func (r *run) render(l *provider.Lease, workdir, machine string) remotecmd.Params {
	s := r.s
	vars := make(map[string]string, len(s.Env)+4)
	for k, v := range s.Env {
		vars[k] = v
	}
	vars["CRABBOX_LEASE_ID"], vars["CRABBOX_RUN_ID"], vars["CRABBOX_SLUG"] = l.ID, r.runID, l.Slug
	// The run's machine, in its environment: another machine's owner
	// check sees this run as in progress while it lives.
	vars["CRABBOX_MACHINE_ID"] = machine
	items, always := "", 4 // the variables every run has
	if sh := s.Shard; sh != nil {
		always += 2
		vars["CRABBOX_SHARD_INDEX"], vars["CRABBOX_SHARD_TOTAL"] = strconv.Itoa(sh.Index), strconv.Itoa(sh.Total)
		if len(sh.Items) > 0 {
			vars["CRABBOX_SHARD_ITEMS"] = remotecmd.ItemsFile(workdir, r.runID)
			items = strings.Join(sh.Items, "\n") + "\n"
			always++
		}
	}
	r.envNames = envfwd.Names(vars)
	r.envAlways = always
	p := remotecmd.Params{
		Workdir: workdir, Subdir: s.Subdir, RunID: r.runID, Argv: s.Argv, Shell: s.Shell || remotecmd.NeedsShell(s.Argv),
		ResultsAuto: s.ResultsAuto, Env: envfwd.Render(vars), ForwardStdin: s.Stdin != nil, Items: items,
	}
	if s.Script != nil {
		p.Shell, p.UserScript = false, &remotecmd.UserScript{Body: string(s.Script.Body)}
	}
	return p
}

// announceCommand prints the forwarded variables and the running line.
func (r *run) announceCommand(l *provider.Lease) {
	if len(r.envNames) > r.envAlways {
		r.notef("env forwarded: %s", strings.Join(r.envNames, ","))
	}
	r.notef("running on %s %s", l.Workspace, runs.CommandLine(r.s.commandWords(), r.s.Shell && r.s.Script == nil))
}

// runCommand runs line (rc's command, alone or behind a fast check) with
// header then the command's own stdin as its input. With g (a fast
// attempt) output waits for the marker and started says whether the
// command started; without, it always did. capErr is a capture that could
// not be put in place.
func (r *run) runCommand(ctx context.Context, sess *sshx.Session, rc remotecmd.Command, line string, header func(io.Writer) error, g *fastGate) (code int, capErr, err error, started bool) {
	d, s, l := r.d, r.s, r.lease
	var wait func() bool
	if g != nil {
		wait = g.waitGo
		h := header
		header = func(w io.Writer) error {
			err := h(w)
			g.headerSent() // the verdict's deadline runs from here
			return err
		}
	}
	in, err := newCommandInput(header, s.Stdin, wait)
	if err != nil {
		return -1, nil, err, false
	}
	cmdStart := d.Now()
	logw := r.rec.Log()
	var stdout, stderr io.Writer = io.MultiWriter(s.Stdout, logw), io.MultiWriter(s.Stderr, logw)
	if f := captureFile(r.caps, "stdout"); f != nil {
		stdout = f // the file itself: ssh writes it directly
	}
	if f := captureFile(r.caps, "stderr"); f != nil {
		stderr = f
	}
	runCtx := ctx
	timedOut := func() bool { return false }
	if g != nil {
		g.out, g.errw = stdout, stderr
		stdout, stderr = gateOut{g}, gateErr{g}
		var stop func()
		runCtx, stop, timedOut = withVerdictDeadline(ctx, g)
		defer stop()
	}
	// An interrupt stops the remote process group at once, while the ssh
	// client is still being torn down: an OpenSSH server keeps a session's
	// command running after its client goes, and the control master holds
	// the client's output pipes until the command ends, so waiting for the
	// client first costs its whole WaitDelay.
	cmdDone := make(chan struct{})
	earlyStop := make(chan struct{})
	go func() {
		defer close(earlyStop)
		select {
		case <-ctx.Done():
			r.stopRemoteQuiet(ctx, sess, rc.PIDFile)
		case <-cmdDone:
		}
	}()
	code, err = sess.Run(runCtx, line, in.r, stdout, stderr)
	close(cmdDone)
	<-earlyStop
	r.timing["commandMs"] = d.Now().Sub(cmdStart).Milliseconds()
	started = true
	if g != nil {
		started, _ = g.end()
	}
	if rerr := in.close(); rerr != nil && started {
		r.notef("warning: reading stdin for the command: %v (the command saw EOF there)", rerr)
	}
	if !started {
		if ctx.Err() == nil && timedOut() {
			err = fastTimeoutError(l.Workspace)
		}
		return code, nil, err, false
	}
	if ctx.Err() != nil {
		_ = r.commitCaptures(r.caps, "the run was interrupted, so it may end early")
		r.stopRemote(ctx, sess, rc.PIDFile, l.Workspace)
		return exitcode.Interrupted, nil, context.Canceled, true
	}
	if err != nil && exitcode.Code(err) == exitcode.Transport {
		// ssh exits 255 both when the tunnel fails and when the command
		// itself exits 255; the wrapper leaves an exit file only in the
		// second case.
		if c, ok := commandExit(ctx, sess, rc.ExitFile); ok {
			code, err = c, nil
		}
	}
	partial := ""
	if err != nil {
		partial = "the tunnel failed, so it may end early"
	}
	capErr = r.commitCaptures(r.caps, partial)
	if err != nil {
		if exitcode.Code(err) == exitcode.Transport {
			// The tunnel dropped mid-command, but the remote command runs on
			// (measured on a real Coder), and the lease lock is released
			// when this run returns: stop it so the next run never syncs
			// into a tree it is still using.
			if r.stopRemote(ctx, sess, rc.PIDFile, l.Workspace) {
				r.notef("stopped the remote command after the tunnel dropped")
			}
			return -1, capErr, fmt.Errorf("running the command on %s: %w; %s, then rerun", l.Workspace, err, exitcode.Next("crabbox status "+l.Ident())), true
		}
		return -1, capErr, err, true
	}
	return code, capErr, nil, true
}

// afterCommand collects results and artifacts of a command that ended
// with code.
func (r *run) afterCommand(ctx context.Context, sess *sshx.Session, workdir string, rc remotecmd.Command, code int, capErr error) (int, error) {
	s := r.s
	if len(s.JUnit) > 0 || s.ResultsAuto {
		r.step = StepResults
		r.collectResults(ctx, sess, workdir, rc.Dir)
	}
	if s.Artifacts.wanted() {
		r.step = StepArtifacts
		if err := r.fetchArtifacts(ctx, sess, workdir, code == 0 && capErr == nil); err != nil {
			if errors.Is(err, context.Canceled) {
				return exitcode.Interrupted, err
			}
			return -1, err
		}
	}
	if capErr != nil && code == 0 {
		r.step = StepCommand
		return -1, capErr // the file asked for is missing: not a success
	}
	return code, nil
}

// resolve resolves the --id lease; confirm skips a provider's fast path.
func (r *run) resolve(ctx context.Context, confirm bool) (*provider.Lease, error) {
	d, s := r.d, r.s
	return d.Provider.Resolve(ctx, provider.ResolveRequest{
		Ident: s.Ident, Mode: provider.Prepare, RepoRoot: s.RepoRoot, Reclaim: s.Reclaim, Ready: d.Ready, Open: d.Open,
		Confirm: confirm, DeferReady: !confirm,
	})
}

// mayReconfirm reports whether err, a transport failure right after the
// lease was resolved from a live persistent connection alone, calls for
// resolving it again through the provider (reconfirm).
func (r *run) mayReconfirm(ctx context.Context, err error) bool {
	return r.lease != nil && r.lease.Unconfirmed && ctx.Err() == nil && exitcode.Code(err) == exitcode.Transport
}

// reconfirm is the fall-back of a fast-path resolve: the persistent
// connection answered the ready check, then failed, so the machine may be
// stopping behind crabbox's back. The connection is ended and the lease
// resolved again through the provider's inventory (Coder's listing waits
// for a stop in progress and starts the workspace), as a run without the
// fast path would have; the returned session is the new lease's.
func (r *run) reconfirm(ctx context.Context, sess *sshx.Session, cause error) (*sshx.Session, error) {
	r.notef("the persistent connection to %s failed (%v); checking with %s", r.lease.Ref, execx.FirstLine(cause.Error()), r.d.Provider.Name())
	if err := sess.Shutdown(); err != nil {
		r.notef("warning: closing the old tunnel: %v", err)
	}
	start := r.d.Now()
	l, err := r.resolve(ctx, true)
	r.d.EndProgress(err)
	// The second resolve (a start of the workspace, its wait) is the
	// lease's time too: the summary's lease= would otherwise show the
	// first, fast one alone.
	ms, _ := r.timing["leaseMs"].(int64)
	r.timing["leaseMs"] = ms + r.d.Now().Sub(start).Milliseconds()
	if err != nil {
		return nil, err
	}
	r.lease = l
	return r.d.Tunnels.Get(l.Target)
}

// checkReady runs the ready check a fast-path resolve left to the run
// (Lease.ReadyUnchecked); when it fails, or its transport does, the lease
// is resolved again through the provider (reconfirm), whose own wait
// checks readiness. The session returned is the one the run goes on with.
func (r *run) checkReady(ctx context.Context, sess *sshx.Session) (*sshx.Session, error) {
	cctx, cancel := context.WithTimeout(ctx, readyCheckTimeout)
	code, err := sess.Run(cctx, r.lease.Target.ReadyCheck, nil, nil, nil)
	cancel()
	switch {
	case ctx.Err() != nil:
		return nil, context.Canceled
	case err == nil && code == 0:
		r.lease.ReadyUnchecked = false
		return sess, nil
	case err == nil:
		err = fmt.Errorf("its ready check exited %d", code)
	}
	return r.reconfirm(ctx, sess, err)
}

// readyCheckTimeout bounds checkReady's round trip.
const readyCheckTimeout = 10 * time.Second

// syncOptions are the run's sync options for workdir.
func (r *run) syncOptions(workdir string) syncer.Options {
	so := r.s.Sync
	so.RepoRoot, so.Workdir = r.s.RepoRoot, workdir
	so.PrepareHook = r.syncHook()
	return so
}

// syncHook is what the sync's prepare step (and the fast check) runs first.
func (r *run) syncHook() string {
	if h := r.s.Sync.PrepareHook; h != "" {
		return h
	}
	return remotecmd.ReapLeftovers
}

// scan is the local half of the sync (manifest, guards, fingerprint): the
// one place a run computes it, unless the spec brings one made earlier
// (Sync.Plan: one snapshot for every shard of a sharded run).
func (r *run) scan(ctx context.Context, so syncer.Options) *syncer.Plan {
	if so.Plan != nil {
		return so.Plan
	}
	return syncer.Scan(ctx, r.d.Runner, so)
}

func (r *run) syncReport(e syncer.Event) {
	if e.Kind != "phase" {
		fmt.Fprintln(r.d.Notes, e.Message)
	}
}

// sync sends the tree (plan, when not nil, is its scan), retrying once
// over a new tunnel when the transport failed (after a fast-path resolve,
// over the lease resolved again); the session returned is the one the run
// goes on with.
func (r *run) sync(ctx context.Context, sess *sshx.Session, workdir string, plan *syncer.Plan) (*sshx.Session, error) {
	so := r.syncOptions(workdir)
	if plan == nil {
		plan = r.scan(ctx, so)
	}
	res, err := syncer.Send(ctx, r.d.Runner, sess, so, plan, r.syncReport)
	if retriable(ctx, err) {
		// The sync protocol is idempotent (the remote fingerprint is
		// dropped before anything changes), so a sync that lost its
		// transport is retried once over a fresh tunnel: the old master
		// may be stalled rather than gone, so it is closed first.
		var rerr error
		if sess, rerr = r.newTunnel(ctx, sess, "sync", err); rerr != nil {
			return nil, rerr
		}
		res, err = syncer.Send(ctx, r.d.Runner, sess, so, r.scan(ctx, so), r.syncReport)
	}
	r.recordSync(res, err)
	return sess, err
}

// retriable reports whether err, from a step that is safe to repeat,
// lost its transport (and the run was not interrupted): such a step is
// tried once more over a new tunnel (newTunnel).
func retriable(ctx context.Context, err error) bool {
	return err != nil && exitcode.Code(err) == exitcode.Transport && ctx.Err() == nil
}

// newTunnel is the session a step that lost its transport (err) is
// retried over. After a fast-path resolve the lease is resolved again
// through the provider first (reconfirm): a new tunnel goes by name, and
// only the listing proves the name still means the lease's machine.
// Otherwise the tunnel is ended so the retry opens a new one. Shutdown,
// not Close: a persistent master (ssh.persist) must end too, or the retry
// would attach to the same stalled one.
func (r *run) newTunnel(ctx context.Context, sess *sshx.Session, step string, err error) (*sshx.Session, error) {
	if r.mayReconfirm(ctx, err) {
		return r.reconfirm(ctx, sess, err)
	}
	r.notef("%s: %v; retrying once over a new tunnel", step, execx.FirstLine(err.Error()))
	if cerr := sess.Shutdown(); cerr != nil {
		r.notef("warning: closing the old tunnel: %v", cerr)
	}
	return sess, nil
}

// recordSync puts a sync's result in the timing and the run record.
func (r *run) recordSync(res syncer.Result, _ error) {
	r.timing["syncMs"], r.timing["syncSkipped"], r.timing["syncPhases"] = res.Duration.Milliseconds(), res.Skipped, res.Phases
	r.update(func(rec *runs.Record) {
		rec.SyncSkipped = res.Skipped
		for _, p := range res.Phases {
			rec.Phases = append(rec.Phases, runs.Phase{Name: "sync." + p.Name, Ms: p.Ms, Skipped: p.Skipped, Reason: p.Reason})
		}
	})
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

// stopRemoteQuiet is stopRemote's first try on an interrupt: no warning
// (stopRemote follows once the command's ssh has ended, and warns then).
func (r *run) stopRemoteQuiet(ctx context.Context, sess *sshx.Session, pidFile string) {
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_, _ = sess.Run(kctx, remotecmd.KillScript(pidFile), nil, nil, nil)
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
	step := r.failedStep(code, exit, runErr, interrupted)
	if step != "" {
		r.update(func(rec *runs.Record) { rec.FailedStep = step })
	}
	// The outcome is recorded before the release, so a kill during the
	// release leaves a finished record.
	if err := r.rec.Finish(state, exit); err != nil {
		r.notef("warning: recording run %s: %v", r.runID, err)
	}
	if rec := r.rec.Record(); rec.LogIncomplete {
		r.notef("warning: run %s: %s (the outcome is recorded)", r.runID, runs.LogIncompleteNote(&rec))
	}

	out := Outcome{RunID: r.runID, Exit: exit, State: state, Lease: r.lease, Timing: r.timing, Policy: s.StopAfter, FailedStep: step}
	// The bundle is written before the release (a kill during a slow
	// release still leaves one) and again after it, with the release.
	if step != "" {
		out.Bundle = r.writeBundle(step, false)
	}
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
			phase.Error = execx.FirstLine(out.ReleaseErr.Error())
		case !out.Released:
			phase.Skipped, phase.Reason = true, "lease kept"
		}
		if err := r.rec.AddFinalPhase(phase); err != nil {
			r.notef("warning: recording run %s: %v", r.runID, err)
		}
		out.StopCommand = provider.StopCommand(d.Provider, r.lease.Ident())
		r.timing["stopCommand"] = out.StopCommand
	}
	if step == "" && runErr == nil && out.ReleaseErr != nil {
		// A passing command whose release failed is a failed run (exit
		// 7: a machine may be left running), in the record as in the
		// process's exit; the command's own exit was 0.
		step = StepRelease
		out.FailedStep = step
		state, exit = "failed", exitcode.Transport
		out.State, out.Exit = state, exit
		if err := r.rec.FailAfterFinish(step, exit); err != nil {
			r.notef("warning: recording run %s: %v", r.runID, err)
		}
	}
	out.Total = r.rec.Record().Duration().Truncate(time.Millisecond)
	r.timing["totalMs"], r.timing["exitCode"], r.timing["runStatus"] = out.Total.Milliseconds(), exit, state
	r.timing["leaseStopped"] = out.Released
	if out.ReleaseErr != nil {
		r.timing["leaseStopError"] = out.ReleaseErr.Error()
	}
	if step != "" {
		out.Bundle = r.writeBundle(step, out.Released)
		rec := r.rec.Record()
		tests, more := failingTests(rec.Results, digestTests)
		out.Digest = &Digest{RunID: r.runID, State: state, Step: step, Exit: exit, Tests: tests, More: more,
			Bundle: out.Bundle, Next: NextSteps(rec, out, step)}
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
