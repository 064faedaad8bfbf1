package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox-dev/crabbox/internal/coder"
	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/envfwd"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/leaselock"
	"github.com/crabbox-dev/crabbox/internal/remotecmd"
	"github.com/crabbox-dev/crabbox/internal/results"
	"github.com/crabbox-dev/crabbox/internal/runs"
	"github.com/crabbox-dev/crabbox/internal/sshx"
	"github.com/crabbox-dev/crabbox/internal/syncer"
)

type runOptions struct {
	id, slug            string
	keep, keepOnFailure bool
	freshWorkspace      bool
	stopAfter           string
	reclaim             bool
	shell               bool
	noSync, syncOnly    bool
	fullResync          bool
	checksum            bool
	forceSyncLarge      bool
	timingJSON          bool
	allowEnv            []string
	envProfiles         []string
	junit               []string
	resultsAuto         bool
	failOnTestFailures  bool
	argv                []string
}

func newRunCmd(f *Factory) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARG...]",
		Short: "Sync this repository to a workspace and run a command there",
		Long: `Lease a fresh workspace (or reuse one with --id), send the dirty git working
tree with rsync, run COMMAND in <workRoot>/<lease>/<repo> with live output,
record the run locally (crabbox history/logs/results), and release a fresh
lease afterwards (stop by default, delete with --coder-delete-on-release).

COMMAND is run as argv (each word quoted). A single word with shell syntax
("make build && make test") or --shell runs through bash -lc.

Environment: only allowlisted names are forwarded (env.allow, --allow-env,
PREFIX*), through a 0600 file on the workspace, never on a command line.
CRABBOX_LEASE_ID, CRABBOX_RUN_ID and CRABBOX_SLUG are always set.

EXIT STATUS
  the remote command's exit code, unchanged
  1    --fail-on-test-failures and JUnit failures on an otherwise passing run
  2    usage, configuration or claim conflict
  5    lease not found, ambiguous, or timed out waiting
  6    sync failure
  7    remote transport failure, or release failure after the run
  130  interrupted`,
		Args: func(cmd *cobra.Command, args []string) error { return nil },
		RunE: func(cmd *cobra.Command, args []string) error {
			o.argv = args
			return runRun(f, cmd, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.id, "id", "", "Reuse this lease (ID, slug, workspace or owner/workspace)")
	fl.StringVar(&o.slug, "slug", "", "Slug for a fresh lease")
	fl.BoolVar(&o.keep, "keep", false, "Keep a fresh lease after the run")
	fl.BoolVar(&o.freshWorkspace, "fresh-workspace", false, "Create a new workspace even when a released one could be started")
	fl.BoolVar(&o.keepOnFailure, "keep-on-failure", false, "Keep a fresh lease when the command fails")
	fl.StringVar(&o.stopAfter, "stop-after", "", "Release policy: success, always, failure or never")
	fl.BoolVar(&o.reclaim, "reclaim", false, "Take over a lease claimed by another repository")
	fl.BoolVar(&o.shell, "shell", false, "Run the joined command through bash -lc")
	fl.BoolVar(&o.noSync, "no-sync", false, "Do not sync; run in the existing remote workdir")
	fl.BoolVar(&o.syncOnly, "sync-only", false, "Sync and stop (no command)")
	fl.BoolVar(&o.fullResync, "full-resync", false, "Wipe the remote workdir and sync everything")
	fl.BoolVar(&o.fullResync, "fresh-sync", false, "Alias of --full-resync")
	fl.BoolVar(&o.checksum, "checksum", false, "Compare file contents (rsync --checksum)")
	fl.BoolVar(&o.forceSyncLarge, "force-sync-large", false, "Sync even past sync.failFiles/failBytes")
	fl.BoolVar(&o.timingJSON, "timing-json", false, "Print a timing JSON object on stderr")
	fl.StringArrayVar(&o.allowEnv, "allow-env", nil, "Forward this env var (NAME or PREFIX*; repeatable, comma-separated)")
	fl.StringArrayVar(&o.envProfiles, "env-from-profile", nil, "Read KEY=value lines from this file (allowlisted names only; repeatable)")
	fl.StringSliceVar(&o.junit, "junit", nil, "JUnit XML paths in the workdir to collect (comma-separated)")
	fl.BoolVar(&o.resultsAuto, "results-auto", false, "Collect junit*.xml, TEST-*.xml, results.xml written by the command")
	fl.BoolVar(&o.failOnTestFailures, "fail-on-test-failures", false, "Exit 1 when JUnit reports failures on an otherwise passing run")
	addConfigFlags(cmd)
	return cmd
}

// runState is one run in progress.
type runState struct {
	f      *Factory
	o      *runOptions
	lc     *leaseCtx
	runID  string
	start  time.Time
	rec    *runs.Run
	lease  *coder.Lease
	fresh  bool
	timing map[string]any
	// subdir is where the command runs below the remote workdir: the
	// local working directory's path below the repository root.
	subdir string
}

func validateRunOptions(cmd *cobra.Command, o *runOptions) error {
	switch {
	case o.id != "" && cmd.Flags().Changed("slug"):
		return usageErr("--slug names a fresh lease; it cannot be combined with --id")
	case o.noSync && o.fullResync:
		return usageErr("--full-resync and --no-sync contradict each other")
	case o.noSync && o.syncOnly:
		return usageErr("--sync-only and --no-sync contradict each other")
	case o.syncOnly && len(o.argv) > 0:
		return usageErr("--sync-only runs no command; drop the command or --sync-only")
	case !o.syncOnly && len(o.argv) == 0:
		return usageErr("no command given: crabbox run [flags] -- COMMAND [ARG...]")
	}
	switch o.stopAfter {
	case "", "success", "always", "failure", "never":
	default:
		return usageErr("--stop-after must be success, always, failure or never (got %q)", o.stopAfter)
	}
	return nil
}

// selectEnv resolves the forwarded environment (values never printed).
func selectEnv(f *Factory, cfg *config.Config, o *runOptions) (map[string]string, error) {
	allow, err := envfwd.ParseAllowlists(cfg.Env.Allow, o.allowEnv)
	if err != nil {
		return nil, err
	}
	environ := os.Environ()
	vars := allow.Select(environ)
	if held := allow.Withheld(environ); len(held) > 0 {
		fmt.Fprintf(f.IO.ErrOut, "env: not forwarding %s (credentials and crabbox internals are never matched by a pattern or config entry; name one exactly with --allow-env NAME to send it)\n", strings.Join(held, ","))
	}
	for _, p := range o.envProfiles {
		pv, skipped, err := envfwd.ReadProfile(p)
		if err != nil {
			return nil, err
		}
		for _, s := range skipped {
			fmt.Fprintf(f.IO.ErrOut, "warning: %s: skipped %s (command substitution, unquoted spaces or bad name)\n", p, s)
		}
		for k, v := range pv {
			if allow.Allows(k) {
				vars[k] = v
			}
		}
	}
	for _, k := range envfwd.Forced(vars) {
		fmt.Fprintf(f.IO.ErrOut, "warning: forwarding %s to the workspace because --allow-env names it exactly; it is a credential or a crabbox internal\n", k)
	}
	return vars, nil
}

func runRun(f *Factory, cmd *cobra.Command, o *runOptions) error {
	if err := validateRunOptions(cmd, o); err != nil {
		return err
	}
	slug, err := slugFlag(cmd, o.slug)
	if err != nil {
		return err
	}
	// With --id and no configured provider, the lease's claim names it.
	var lc *leaseCtx
	if o.id != "" {
		lc, err = f.openLeaseOpt(cmd, providerFromLease, o.id)
	} else {
		lc, err = f.openLease(cmd)
	}
	if err != nil {
		return err
	}
	defer lc.close()
	vars, err := selectEnv(f, lc.cfg, o)
	if err != nil {
		return err
	}
	rs := &runState{f: f, o: o, lc: lc, runID: lease.NewRunID(), start: f.Now(), fresh: o.id == "", timing: map[string]any{"provider": "coder"},
		subdir: f.repoPrefix(cmd.Context())}
	store := runs.New(config.StateDir(f.Env))
	store.Now = f.Now // the record's start and end are total='s
	rs.rec, err = store.Start(runs.Record{
		ID: rs.runID, Provider: "coder", RepoRoot: lc.repoRoot, Command: o.argv, Shell: o.shell, StartedAt: rs.start,
	})
	if err != nil {
		return err
	}
	code, runErr := rs.execute(cmd.Context(), slug, vars)
	return rs.finish(code, runErr)
}

// execute acquires the lease, syncs and runs; it returns the remote exit
// code (or -1 when the command never ran) and an error for CLI-side
// failures.
func (rs *runState) execute(ctx context.Context, slug string, vars map[string]string) (int, error) {
	f, o, lc := rs.f, rs.o, rs.lc
	so := syncer.Options{
		RepoRoot:           lc.repoRoot,
		Exclude:            lc.cfg.Sync.Exclude,
		Delete:             lc.cfg.Sync.Delete,
		Checksum:           lc.cfg.Sync.Checksum || o.checksum,
		Fingerprint:        lc.cfg.Sync.Fingerprint,
		FullResync:         o.fullResync,
		GitSeed:            lc.cfg.Sync.GitSeed,
		PrepareHook:        remotecmd.ReapLeftovers,
		WarnFiles:          lc.cfg.Sync.WarnFiles,
		FailFiles:          lc.cfg.Sync.FailFiles,
		WarnBytes:          lc.cfg.Sync.WarnBytes,
		FailBytes:          lc.cfg.Sync.FailBytes,
		AllowLarge:         lc.cfg.Sync.AllowLarge || o.forceSyncLarge,
		AllowMassDeletions: lc.cfg.Sync.AllowMassDeletions,
		Timeout:            lc.cfg.Sync.Timeout,
	}
	// The scan (manifest, fingerprint) runs after the lease: run beside the
	// coder CLI calls it competes for CPU and made warm runs slower on a
	// 2-core machine (measured).
	leaseStart := f.Now()
	var err error
	if rs.fresh {
		rs.lease, err = lc.provider.Acquire(ctx, coder.AcquireRequest{
			Slug: slug, Keep: o.keep, RepoRoot: lc.repoRoot, Reclaim: o.reclaim, Ready: lc.ready,
			Reuse: !o.freshWorkspace,
		})
	} else {
		rs.lease, err = lc.provider.Resolve(ctx, coder.ResolveRequest{
			Ident: o.id, Mode: coder.Prepare, RepoRoot: lc.repoRoot, Reclaim: o.reclaim, Ready: lc.ready, Open: lc.open,
		})
	}
	lc.endProgress(err)
	rs.timing["leaseMs"] = f.Now().Sub(leaseStart).Milliseconds()
	if err != nil {
		return -1, err
	}
	l := rs.lease
	sess, err := lc.session(l)
	if err != nil {
		return -1, err
	}
	// One run at a time per lease: the sync and the command see a tree no
	// other run is changing.
	lock, err := leaselock.Acquire(ctx, config.StateDir(f.Env), l.ID, func() {
		fmt.Fprintf(f.IO.ErrOut, "waiting for lease %s: another crabbox run on this machine is using it\n", l.ID)
	})
	if err != nil {
		if ctx.Err() != nil {
			return 130, context.Canceled
		}
		return -1, err
	}
	defer lock.Release()
	// One owner across machines: refused (nothing changed) when another
	// state dir owns the workspace or runs a command there, unless
	// --reclaim; otherwise this machine is recorded as the owner.
	if err := lc.claimOwner(ctx, sess, l, o.reclaim, func(ident string) string {
		return "`crabbox run --reclaim --id " + ident + " -- …`"
	}); err != nil {
		if l.Adopted {
			rs.lease = nil // its claim is gone again: no "kept" hint
		}
		return -1, err
	}
	machine, err := lc.machineID()
	if err != nil {
		return -1, err
	}
	repoName := syncer.RepoName(ctx, f.Runner, lc.repoRoot)
	workdir := syncer.WorkdirFor(lc.cfg.Coder.WorkRoot, l.ID, repoName)
	rs.update(func(r *runs.Record) {
		r.LeaseID, r.Slug, r.Workspace, r.Workdir = l.ID, l.Slug, l.Ref, workdir
	})
	rs.timing["leaseId"], rs.timing["slug"], rs.timing["workdir"], rs.timing["runId"] = l.ID, l.Slug, workdir, rs.runID
	cwd := ""
	if rs.subdir != "" {
		cwd = " cwd=" + histEscape(histQuote(rs.subdir))
		rs.timing["cwd"] = rs.subdir
	}
	fmt.Fprintf(f.IO.ErrOut, "run %s lease=%s slug=%s provider=coder workspace=%s ssh=%s@%s workdir=%s%s\n",
		rs.runID, l.ID, dash(l.Slug), l.Ref, l.Target.User, l.Target.Host, workdir, cwd)

	if !o.noSync {
		so.Workdir = workdir
		report := func(e syncer.Event) {
			if e.Kind != "phase" {
				fmt.Fprintln(f.IO.ErrOut, e.Message)
			}
		}
		res, err := syncer.Sync(ctx, f.Runner, sess, so, report)
		if err != nil && exitcode.Code(err) == exitcode.Transport && ctx.Err() == nil {
			// The sync protocol is idempotent (the remote fingerprint is
			// dropped before anything changes), so a sync that lost its
			// transport is retried once over a fresh tunnel: the old
			// master may be stalled rather than gone, so it is closed
			// first.
			fmt.Fprintf(f.IO.ErrOut, "sync: %v; retrying once over a new tunnel\n", err)
			if cerr := sess.Close(); cerr != nil {
				fmt.Fprintf(f.IO.ErrOut, "warning: closing the old tunnel: %v\n", cerr)
			}
			res, err = syncer.Sync(ctx, f.Runner, sess, so, report)
		}
		rs.timing["syncMs"], rs.timing["syncSkipped"], rs.timing["syncPhases"] = res.Duration.Milliseconds(), res.Skipped, res.Phases
		rs.update(func(r *runs.Record) {
			r.SyncSkipped = res.Skipped
			for _, p := range res.Phases {
				r.Phases = append(r.Phases, runs.Phase{Name: "sync." + p.Name, Ms: p.Ms, Skipped: p.Skipped, Reason: p.Reason})
			}
		})
		if err != nil {
			return -1, err
		}
	}
	if o.syncOnly {
		return 0, nil
	}

	vars["CRABBOX_LEASE_ID"], vars["CRABBOX_RUN_ID"], vars["CRABBOX_SLUG"] = l.ID, rs.runID, l.Slug
	// The run's machine, in its environment: another machine's owner
	// check sees this run as in progress while it lives.
	vars["CRABBOX_MACHINE_ID"] = machine
	if names := envfwd.Names(vars); len(names) > 4 {
		fmt.Fprintf(f.IO.ErrOut, "env forwarded: %s\n", strings.Join(names, ","))
	}
	shell := o.shell || sshx.NeedsShell(o.argv)
	rc := remotecmd.Render(remotecmd.Params{
		Workdir: workdir, Subdir: rs.subdir, RunID: rs.runID, Argv: o.argv, Shell: shell,
		ResultsAuto: o.resultsAuto || lc.cfg.Results.Auto, Env: envfwd.Render(vars),
	})
	fmt.Fprintf(f.IO.ErrOut, "running on %s %s\n", l.Workspace, histCommand(o.argv, o.shell))

	cmdStart := f.Now()
	logw := rs.rec.Log()
	stdout := io.MultiWriter(f.IO.Out, logw)
	stderr := io.MultiWriter(f.IO.ErrOut, logw)
	code, err := sess.Run(ctx, rc.Line, strings.NewReader(rc.Stdin), stdout, stderr)
	rs.timing["commandMs"] = f.Now().Sub(cmdStart).Milliseconds()
	if ctx.Err() != nil {
		rs.stopRemote(ctx, sess, rc.PIDFile, l.Workspace)
		return 130, context.Canceled
	}
	if err != nil && exitcode.Code(err) == exitcode.Transport {
		// ssh exits 255 both when the tunnel fails and when the command
		// itself exits 255; the wrapper leaves an exit file only in the
		// second case.
		if c, ok := rs.commandExit(ctx, sess, rc.ExitFile); ok {
			code, err = c, nil
		}
	}
	if err != nil {
		if exitcode.Code(err) == exitcode.Transport {
			// The tunnel dropped mid-command, but the remote command runs on
			// (measured on a real Coder), and the lease lock is released
			// when this run returns: stop it so the next run never syncs
			// into a tree it is still using.
			if rs.stopRemote(ctx, sess, rc.PIDFile, l.Workspace) {
				fmt.Fprintln(f.IO.ErrOut, "stopped the remote command after the tunnel dropped")
			}
			return -1, fmt.Errorf("running the command on %s: %w; next: `crabbox status %s`, then rerun", l.Workspace, err, firstNonEmpty(l.Slug, l.ID))
		}
		return -1, err
	}
	if len(o.junit) > 0 || o.resultsAuto || len(lc.cfg.Results.JUnit) > 0 || lc.cfg.Results.Auto {
		rs.collectResults(ctx, sess, workdir, rc.Dir)
	}
	return code, nil
}

// commandExit asks the workspace whether the command wrote an exit file
// (it does only for its own exit 255), over the tunnel or a new one. ok is
// false when it did not or when the workspace cannot be asked: then the
// 255 was the transport's.
func (rs *runState) commandExit(ctx context.Context, sess *sshx.Session, exitFile string) (int, bool) {
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
func (rs *runState) stopRemote(ctx context.Context, sess *sshx.Session, pidFile, workspace string) bool {
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_, err := sess.Run(kctx, remotecmd.KillScript(pidFile), nil, nil, nil)
	if err != nil && kctx.Err() == nil {
		_, err = sess.Run(kctx, remotecmd.KillScript(pidFile), nil, nil, nil)
	}
	if err != nil {
		fmt.Fprintf(rs.f.IO.ErrOut, "warning: the remote command may still be running on %s (it ends when the workspace stops): %v\n", workspace, err)
		return false
	}
	return true
}

// collectResults fetches JUnit files in one round trip and parses them.
// Paths are relative to the command's directory; the workspace refuses any
// that resolves outside the workdir.
func (rs *runState) collectResults(ctx context.Context, sess *sshx.Session, workdir, dir string) {
	f, o, cfg := rs.f, rs.o, rs.lc.cfg
	paths := append(append([]string{}, cfg.Results.JUnit...), o.junit...)
	script := remotecmd.JUnitScript(workdir, dir, rs.runID, paths, o.resultsAuto || cfg.Results.Auto)
	var out, errb bytes.Buffer
	if _, err := sess.Run(ctx, script, nil, &out, &errb); err != nil {
		fmt.Fprintf(f.IO.ErrOut, "warning: collecting test results: %v\n", err)
		return
	}
	for _, line := range strings.Split(errb.String(), "\n") {
		if msg, ok := strings.CutPrefix(strings.TrimSpace(line), "crabbox: "); ok {
			fmt.Fprintf(f.IO.ErrOut, "warning: results: %s\n", histEscape(msg))
		}
	}
	var sums []results.Summary
	data := out.Bytes()
	for len(data) > 0 {
		name, rest, ok := bytes.Cut(data, []byte{0})
		if !ok {
			break
		}
		sizeB, rest, ok := bytes.Cut(rest, []byte{0})
		n, err := strconv.Atoi(strings.TrimSpace(string(sizeB)))
		if !ok || err != nil || n > len(rest) {
			break
		}
		s, err := results.ParseJUnit(string(name), rest[:n])
		if err != nil {
			fmt.Fprintf(f.IO.ErrOut, "warning: %s: %v\n", name, err)
		} else {
			sums = append(sums, s)
		}
		data = rest[n:]
	}
	if len(sums) == 0 {
		fmt.Fprintln(f.IO.ErrOut, "results: no JUnit reports found")
		return
	}
	sum := results.Merge(sums...)
	rs.update(func(r *runs.Record) { r.Results = &sum })
	fmt.Fprintln(f.IO.ErrOut, sum.Line())
}

// finish records the run, releases per policy, prints the summary and
// returns the process's error (its exit code).
func (rs *runState) finish(code int, runErr error) error {
	f, o := rs.f, rs.o
	interrupted := errors.Is(runErr, context.Canceled)
	exit := code
	switch {
	case interrupted:
		exit = 130
	case runErr != nil:
		exit = exitcode.Code(runErr)
	}
	if runErr == nil && exit == 0 && o.failOnTestFailures || runErr == nil && exit == 0 && rs.lc.cfg.Results.FailOnFailures {
		if rec := rs.rec.Record(); rec.Results != nil && rec.Results.HasFailures() {
			fmt.Fprintln(f.IO.ErrOut, "JUnit reports failures; exiting 1 (--fail-on-test-failures)")
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
	if err := rs.rec.Finish(state, exit); err != nil {
		fmt.Fprintf(f.IO.ErrOut, "warning: recording run %s: %v\n", rs.runID, err)
	}
	if rec := rs.rec.Record(); rec.LogIncomplete {
		fmt.Fprintf(f.IO.ErrOut, "warning: run %s: %s (the outcome is recorded)\n", rs.runID, logIncompleteNote(&rec))
	}

	// Release per policy.
	var releaseErr error
	released := false
	releaseStart := f.Now()
	if rs.lease != nil && rs.shouldRelease(exit, runErr) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		rs.lc.close() // the tunnel is not needed to stop the workspace
		_, releaseErr = rs.lc.provider.Release(ctx, rs.lease, coder.ReleaseRequest{})
		cancel()
		released = releaseErr == nil
		policy := o.stopAfter
		if policy == "" {
			policy = "auto"
		}
		fmt.Fprintf(f.IO.ErrOut, "lease cleanup stopped=%t policy=%s lease=%s slug=%s\n", released, policy, rs.lease.ID, dash(rs.lease.Slug))
	}
	// The release joins the record as its last phase and the record's end
	// moves past it: history's duration and total= are one figure.
	if rs.lease != nil {
		phase := runs.Phase{Name: "release", Ms: f.Now().Sub(releaseStart).Milliseconds()}
		switch {
		case releaseErr != nil:
			phase.Error = results.FirstLine(releaseErr.Error())
		case !released:
			phase.Skipped, phase.Reason = true, "lease kept"
		}
		if err := rs.rec.AddFinalPhase(phase); err != nil {
			fmt.Fprintf(f.IO.ErrOut, "warning: recording run %s: %v\n", rs.runID, err)
		}
	}
	total := rs.rec.Record().Duration().Truncate(time.Millisecond) // durationMs
	rs.timing["totalMs"], rs.timing["exitCode"], rs.timing["runStatus"] = total.Milliseconds(), exit, state
	rs.timing["leaseStopped"] = released
	if releaseErr != nil {
		rs.timing["leaseStopError"] = releaseErr.Error()
	}
	if rs.lease != nil {
		stop := fmt.Sprintf("crabbox stop --provider coder --target linux --coder-delete-on-release=%t --id %s", rs.lc.cfg.Coder.DeleteOnRelease, firstNonEmpty(rs.lease.Slug, rs.lease.ID))
		rs.timing["stopCommand"] = stop
		fmt.Fprintf(f.IO.ErrOut, "run summary run=%s lease=%s sync=%s command=%s total=%s sync_skipped=%v exit=%d\n",
			rs.runID, ms(rs.timing["leaseMs"]), ms(rs.timing["syncMs"]), ms(rs.timing["commandMs"]), total.Round(time.Millisecond), rs.timing["syncSkipped"] == true, exit)
		if !released {
			fmt.Fprintf(f.IO.ErrOut, "lease %s kept; release it with: %s\n", rs.lease.ID, stop)
		}
	}
	if o.timingJSON {
		b, _ := json.Marshal(rs.timing)
		fmt.Fprintln(f.IO.ErrOut, string(b))
	}
	switch {
	case interrupted:
		return exitcode.Errorf(130, "interrupted; run %s recorded as interrupted", rs.runID)
	case runErr != nil:
		return runErr
	case releaseErr != nil:
		return exitcode.Errorf(exitcode.Transport, "lease cleanup failed for %s: %v", rs.lease.ID, releaseErr)
	case exit != 0:
		return exitcode.Silent(exit)
	}
	return nil
}

// update changes the run record; a failure to persist only warns (the
// run itself goes on).
func (rs *runState) update(fn func(*runs.Record)) {
	if err := rs.rec.Update(fn); err != nil {
		fmt.Fprintf(rs.f.IO.ErrOut, "warning: recording run %s: %v\n", rs.runID, err)
	}
}

// shouldRelease applies --stop-after and the fresh-lease default.
func (rs *runState) shouldRelease(exit int, runErr error) bool {
	o := rs.o
	failed := exit != 0 || runErr != nil
	switch o.stopAfter {
	case "always":
		return true
	case "never":
		return false
	case "success":
		return !failed
	case "failure":
		return failed
	}
	if !rs.fresh || o.keep {
		return false
	}
	return !(o.keepOnFailure && failed)
}

func ms(v any) string {
	n, ok := v.(int64)
	if !ok {
		return "-"
	}
	return (time.Duration(n) * time.Millisecond).String()
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
