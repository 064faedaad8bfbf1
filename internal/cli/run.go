package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/envfwd"
	"github.com/crabbox-dev/crabbox/internal/runner"
	"github.com/crabbox-dev/crabbox/internal/runs"
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
	timingJSON          bool
	preflight           bool
	allowEnv            []string
	envProfiles         []string
	argv                []string
	// input and captures (runinput.go)
	script                       string
	scriptStdin                  bool
	captureStdout, captureStderr string
	artifacts                    runArtifactFlags
	shard                        shardFlags
}

func newRunCmd(f *Factory) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARG...] | run --script FILE [flags] [-- ARG...]",
		Short: "Sync this repository to a workspace and run a command there",
		Long: `Lease a fresh workspace (or reuse one with --id), send the dirty git working
tree with rsync, run COMMAND in <workRoot>/<lease>/<repo> with live output,
record the run locally (crabbox history/logs/results), and release a fresh
lease afterwards (stop by default, delete with --coder-delete-on-release).

COMMAND is run as argv (each word quoted). A single word with shell syntax
("make build && make test") or --shell runs through bash -lc. --script FILE
(or --script-stdin) uploads a bash script and runs it instead, the trailing
words as its arguments.

Input: when crabbox's stdin is not a terminal it is forwarded to the command,
EOF included (git diff | crabbox run --id L -- git apply); from a terminal
the command reads /dev/null. --capture-stdout/--capture-stderr FILE write
that remote stream's raw bytes to a local file instead of the terminal.

Environment: only allowlisted names are forwarded (env.allow, --allow-env,
PREFIX*), through a 0600 file on the workspace, never on a command line.
CRABBOX_LEASE_ID, CRABBOX_RUN_ID and CRABBOX_SLUG are always set.

Files: --artifact-glob GLOB fetches matching remote files (relative to the
remote workdir, ** allowed) into the run record after the command, passed or
failed (crabbox artifacts RUN); --require-artifact GLOB also fails a passing
run that made no match; --download REMOTE=LOCAL writes one remote file
locally after a passing command. Nothing outside the workdir is fetched.

A failed or interrupted run leaves a failure bundle (crabbox logs RUN
--bundle) and prints a digest: the failing step, the exit code, the first
failing tests and the next commands that apply to the run.

EXIT STATUS
  the remote command's exit code, unchanged
  1    --fail-on-test-failures and JUnit failures on an otherwise passing run,
       a --capture-* file that could not be written, a --require-artifact
       without a match, or a --download not written after a passing command
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
	fl.BoolVar(&o.timingJSON, "timing-json", false, "Print a timing JSON object on stderr")
	fl.BoolVar(&o.preflight, "preflight", false, "Before the command, print and record a snapshot of the machine (OS, CPUs, memory, disk, tool versions)")
	fl.StringArrayVar(&o.allowEnv, "allow-env", nil, "Forward this env var (NAME or PREFIX*; repeatable, comma-separated)")
	fl.StringArrayVar(&o.envProfiles, "env-from-profile", nil, "Read KEY=value lines from this file (allowlisted names only; repeatable)")
	addRunInputFlags(cmd, o)
	addRunArtifactFlags(fl, &o.artifacts)
	addShardFlags(cmd, &o.shard)
	addConfigFlags(cmd)
	return cmd
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
	case o.syncOnly && o.artifacts.any():
		return usageErr("--sync-only runs no command; --artifact-glob, --require-artifact and --download need one")
	case !o.syncOnly && len(o.argv) == 0 && o.script == "" && !o.scriptStdin:
		return usageErr("no command given: crabbox run [flags] -- COMMAND [ARG...]")
	}
	if err := validateRunInput(o); err != nil {
		return err
	}
	if err := validateShardFlags(cmd, o); err != nil {
		return err
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
	input, err := readRunInput(f, o)
	if err != nil {
		return err
	}
	// With --id and no configured provider, the lease's claim names it.
	var lc *leaseCtx
	if o.id != "" {
		lc, err = f.openLeaseOpt(cmd, providerFromLease, firstID(o.id))
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
	cfg := lc.cfg
	art, err := f.artifactSpec(cfg, &o.artifacts)
	if err != nil {
		return err
	}
	so := syncer.OptionsFrom(cfg) // --checksum and --force-sync-large are config flags
	so.FullResync = o.fullResync
	store := runs.New(config.StateDir(f.Env))
	store.Now = f.Now // the record's start and end are total='s
	spec := runner.Spec{
		Ident: o.id, Slug: slug, Keep: o.keep, KeepOnFailure: o.keepOnFailure, StopAfter: o.stopAfter,
		FreshWorkspace: o.freshWorkspace, Reclaim: o.reclaim, RepoRoot: lc.repoRoot, Subdir: f.repoPrefix(cmd.Context()),
		Argv: o.argv, Shell: o.shell, NoSync: o.noSync, SyncOnly: o.syncOnly, Sync: so, Env: vars,
		JUnit:              cfg.Results.JUnit, // --junit, --results-auto and --fail-on-test-failures are config flags
		ResultsAuto:        cfg.Results.Auto,
		FailOnTestFailures: cfg.Results.FailOnFailures,
		Artifacts:          art,
		// --preflight-tools is a config flag; given, it implies --preflight.
		Preflight:      o.preflight || cmd.Flags().Changed("preflight-tools"),
		PreflightTools: cfg.Run.PreflightTools,
		Stdout:         f.IO.Out, Stderr: f.IO.ErrOut,
	}
	input.apply(&spec)
	if o.shard.shardsUsed {
		return runSharded(f, cmd, o, lc, spec, store)
	}
	out, runErr := runner.Run(cmd.Context(), runner.Deps{
		Provider: lc.provider, Tunnels: lc.tunnels, Runner: f.Runner, Runs: store, Owner: lc.owner,
		StateDir: config.StateDir(f.Env), Now: f.Now, Notes: f.IO.ErrOut,
		Ready: lc.ready, Open: lc.open, EndProgress: lc.endProgress,
	}, spec)
	renderRunSummary(f, o, out)
	return runErr
}

// renderRunSummary prints the run's closing lines (and --timing-json).
func renderRunSummary(f *Factory, o *runOptions, out runner.Outcome) {
	if l := out.Lease; l != nil {
		t := out.Timing
		fmt.Fprintf(f.IO.ErrOut, "run summary run=%s lease=%s sync=%s command=%s total=%s sync_skipped=%v exit=%d\n",
			out.RunID, ms(t["leaseMs"]), ms(t["syncMs"]), ms(t["commandMs"]), out.Total.Round(time.Millisecond), t["syncSkipped"] == true, out.Exit)
		if !out.Released {
			fmt.Fprintf(f.IO.ErrOut, "lease %s kept; release it with: %s\n", l.ID, out.StopCommand)
		}
	}
	if d := out.Digest; d != nil {
		for _, line := range d.Lines() {
			fmt.Fprintln(f.IO.ErrOut, line)
		}
	}
	if o.timingJSON {
		b, _ := json.Marshal(out.Timing)
		fmt.Fprintln(f.IO.ErrOut, string(b))
	}
}

func ms(v any) string {
	n, ok := v.(int64)
	if !ok {
		return "-"
	}
	return (time.Duration(n) * time.Millisecond).String()
}
