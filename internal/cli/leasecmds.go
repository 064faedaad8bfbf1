package cli

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/owner"
	"github.com/crabbox-dev/crabbox/internal/provider"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

func newListCmd(f *Factory) *cobra.Command {
	var asJSON, all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List crabbox's Coder workspaces (read-only)",
		Long: `List the Coder workspaces crabbox owns or has claimed. --all also lists the
other workspaces Coder shows you. Read-only.

Human rows: <owner/name> <name> <state> <template> lease=<id> slug=<slug> keep=<bool> claimed=<bool> target=linux
--json: an array of normalized lease objects (the same shape as status --json).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			lc, err := f.openLeaseOpt(cmd, providerFromAll, "")
			if err != nil {
				return err
			}
			defer lc.close()
			leases, err := lc.provider.List(cmd.Context(), all)
			if err != nil {
				return err
			}
			views := []leaseView{}
			now := f.Now()
			for _, l := range leases {
				views = append(views, newLeaseView(l, false, now))
			}
			if asJSON {
				return writeJSON(f.IO.Out, views)
			}
			if len(views) == 0 {
				fmt.Fprintln(f.IO.ErrOut, "no crabbox workspaces (crabbox list --all shows every workspace)")
			}
			for _, v := range views {
				fmt.Fprintf(f.IO.Out, "%s %s %s %s lease=%s slug=%s keep=%t claimed=%t target=linux\n",
					v.WorkspaceRef, v.Workspace, v.State, dash(v.ServerType), dash(v.ID), dash(v.Slug), v.Keep, v.Claimed)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "Print JSON")
	cmd.Flags().BoolVar(&all, "all", false, "Also list workspaces crabbox does not own")
	addConfigFlags(cmd)
	return cmd
}

func newSSHCmd(f *Factory) *cobra.Command {
	var id string
	var reclaim bool
	cmd := &cobra.Command{
		Use:   "ssh [LEASE]",
		Short: "Print a ready-to-paste ssh command for a lease (starts it if stopped)",
		Long: `Resolve a lease, make it ready (start a stopped workspace and wait for SSH),
claim it for this repository, and print one fully quoted 'ssh ...' command line
on stdout. Nothing is executed: paste the line into a shell, or run
  eval "$(crabbox ssh LEASE)"

A workspace crabbox did not create is adopted: it gets a claim, so
'crabbox stop' may later stop it.

EXIT STATUS
  0  printed
  2  usage error, claim conflict, or the workspace belongs to another
     machine (its owner record) or runs another machine's command
     (use --reclaim to take it over)
  5  not found, ambiguous or timed out waiting`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lc, ident, err := f.openNamedLease(cmd, id, args)
			if err != nil {
				return err
			}
			defer lc.close()
			l, _, err := lc.prepareLease(cmd.Context(), ident, reclaim, false, func(ident string) string {
				return "crabbox ssh --reclaim " + ident
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(f.IO.Out, sshx.PasteLine(l.Target))
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "Lease ID, slug, workspace name or owner/workspace")
	cmd.Flags().BoolVar(&reclaim, "reclaim", false, "Take over a claim bound to another repository, or a workspace owned by another machine")
	addConfigFlags(cmd)
	return cmd
}

func newStopCmd(f *Factory) *cobra.Command {
	var id string
	var reclaim bool
	cmd := &cobra.Command{
		Use:     "stop [LEASE]",
		Aliases: []string{"release"},
		Short:   "Release a lease: stop its workspace (or delete it) and drop the claim",
		Long: `Release the lease with the action its claim recorded when it was created
(stop by default) and remove the local claim. Deleting a lease whose claim
recorded stop needs --coder-delete-on-release on the command line; a config
value (user or repo file) never turns a stop into a delete.

Only a workspace with an exact local claim (or crabbox's own released record)
is touched, and only when the claim's workspace ID, name and owner match
Coder's listing: otherwise crabbox refuses (exit 2, nothing changed). A lease
claimed by another repository needs --reclaim. A workspace Coder no longer
knows counts as released. A running workspace whose owner record names
another machine (it took the lease over) is not stopped: only this
machine's stale claim is dropped. One with another machine's run in
progress is refused without --reclaim. A workspace released by stopping stays known:
'crabbox list' shows it as released, a later one-shot 'crabbox run' may
start it again, and 'crabbox cleanup --released-older-than 7d' deletes it.

EXIT STATUS
  0  released
  2  usage error, or refused: no exact claim, a claim that does not match
     Coder's listing, or a lease of another repository (use --reclaim)
  5  not found or ambiguous
  other: the coder CLI's own exit code when 'coder stop/delete' fails`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lc, ident, err := f.openNamedLease(cmd, id, args)
			if err != nil {
				return err
			}
			defer lc.close()
			l, err := lc.provider.Resolve(cmd.Context(), provider.ResolveRequest{Ident: ident, Mode: provider.ReleaseOnly})
			if err != nil {
				return err
			}
			var remote owner.Remote
			if l.Claim != nil && l.Ready && !reclaim && !provider.KeepsOwnerRecord(lc.provider) {
				if sess, err := lc.session(l); err == nil {
					remote = sess
				}
			}
			drop, err := lc.owner.StopGate(cmd.Context(), remote, l, reclaim)
			if err != nil {
				return err
			}
			if drop {
				// Another machine owns the workspace now: only this
				// machine's stale claim goes; the workspace is left alone.
				if err := lc.claims.Remove(l.ID); err != nil {
					return exitcode.New(exitcode.Failure, fmt.Errorf("removing the stale claim of lease %s: %w", l.ID, err))
				}
				fmt.Fprintf(f.IO.ErrOut, "lease %s belongs to another machine now: dropped this machine's stale claim; workspace %s was not stopped (`crabbox stop --reclaim %s` would stop it)\n", l.ID, l.Workspace, l.ID)
				return nil
			}
			res, err := lc.provider.Release(cmd.Context(), l, provider.ReleaseRequest{RepoRoot: lc.repoRoot, Reclaim: reclaim})
			var kept *provider.ClaimKeptError
			if errors.As(err, &kept) {
				return exitcode.New(exitcode.Code(err), claimKeptMessage(l, kept))
			}
			if err != nil {
				if exitcode.IsRefused(err) {
					return err // a refusal changed nothing and says what to do
				}
				// The claim stays (nothing was released): say so and how
				// to retry.
				return exitcode.New(exitcode.Code(err), fmt.Errorf("%w\nlease %s was not released; its claim is kept: retry with `crabbox stop %s`", err, l.ID, l.ID))
			}
			verb := "stopped"
			if res.Action == provider.ActionDelete {
				verb = "deleted"
			}
			msg := fmt.Sprintf("%s %s workspace lease=%s workspace=%s", verb, l.Provider, l.ID, l.Workspace)
			switch {
			case res.Action == provider.ActionForget && res.Skipped != "":
				msg = fmt.Sprintf("released %s host %s (lease=%s; %s); the host was left running", l.Provider, l.Workspace, l.ID, res.Skipped)
			case res.Action == provider.ActionForget:
				msg = fmt.Sprintf("released %s host %s (lease=%s); the host was left running", l.Provider, l.Workspace, l.ID)
			case res.Skipped != "" && l.Claim == nil:
				msg = fmt.Sprintf("released lease=%s workspace=%s (%s; already released)", l.ID, l.Workspace, res.Skipped)
			case res.Skipped != "":
				msg = fmt.Sprintf("released lease=%s workspace=%s (%s; claim removed)", l.ID, l.Workspace, res.Skipped)
			}
			fmt.Fprintln(f.IO.ErrOut, msg)
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "Lease ID, slug, workspace name or owner/workspace")
	cmd.Flags().BoolVar(&reclaim, "reclaim", false, "Release a lease claimed by another repository, or owned by / running a command of another machine")
	addConfigFlags(cmd)
	return cmd
}

// claimKeptMessage says truthfully what a release that could not remove
// its claim did: Coder's part is done, only the claim file is left, and
// how to remove it.
func claimKeptMessage(l *provider.Lease, kept *provider.ClaimKeptError) error {
	what := "stopped " + l.Provider + " workspace"
	switch {
	case kept.Result.Skipped != "":
		what = "nothing to do in Coder (" + kept.Result.Skipped + ") for workspace"
	case kept.Result.Action == provider.ActionDelete:
		what = "deleted " + l.Provider + " workspace"
	}
	return fmt.Errorf("%s %s (lease %s), but its local claim could not be removed: %v\n"+
		"the workspace needs nothing more; only the claim file %s is left. "+
		"Once %s is writable again, run `crabbox stop %s` to remove it (or delete the file)",
		what, l.Workspace, l.ID, kept.Err, kept.Path, filepath.Dir(kept.Path), l.ID)
}

func newCleanupCmd(f *Factory) *cobra.Command {
	var dryRun bool
	var releasedOlderThan string
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Stop or delete workspaces whose local claim expired (--dry-run to preview)",
		Long: `Sweep crabbox's Coder workspaces. A workspace is stopped (or deleted, per the
action recorded when it was claimed) only when its local claim expired: not
used for idle-timeout + 12h and not kept. Unclaimed workspaces are never
touched. --dry-run prints the same decisions and changes nothing.

Workspaces crabbox released by stopping them (one-shot runs) are only listed,
unless --released-older-than AGE (e.g. 7d, 36h, 0s) is given: then the ones
released at least AGE ago and still stopped are deleted. Only a workspace with
crabbox's released record (same workspace ID, name and owner) is ever deleted
this way; a record whose workspace is gone or was recreated is dropped.

stdout: coder cleanup <stop|delete> workspace=<name> lease=<id> reason=claim expired dry_run=<bool>
stderr: skip coder workspace=<name> reason=<reason>`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			lc, err := f.openLeaseOpt(cmd, providerFromAll, "")
			if err != nil {
				return err
			}
			defer lc.close()
			req := provider.CleanupRequest{DryRun: dryRun}
			if cmd.Flags().Changed("released-older-than") {
				age, err := parseAge(releasedOlderThan)
				if err != nil {
					return usageErr("--released-older-than %q: %v (examples: 7d, 36h, 0s)", releasedOlderThan, err)
				}
				req.DeleteReleased, req.ReleasedOlderThan = true, age
			}
			decisions, err := lc.provider.Cleanup(cmd.Context(), req)
			for _, d := range decisions {
				if d.Action == "" {
					fmt.Fprintf(f.IO.ErrOut, "skip %s workspace=%s reason=%s\n", lc.provider.Name(), d.Workspace, d.Reason)
					continue
				}
				if !dryRun && !d.Done {
					continue
				}
				fmt.Fprintf(f.IO.Out, "%s cleanup %s workspace=%s lease=%s reason=%s dry_run=%t\n", lc.provider.Name(), d.Action, d.Workspace, dash(d.LeaseID), d.Reason, dryRun)
			}
			var kept *provider.ClaimKeptError
			if errors.As(err, &kept) {
				return exitcode.New(exitcode.Code(err), fmt.Errorf("cleanup: %s workspace for lease %s done, but its local claim could not be removed: %v\n"+
					"the sweep stopped there; the remaining expired leases were not touched. Once %s is writable again, run `crabbox cleanup`",
					kept.Result.Action, kept.LeaseID, kept.Err, filepath.Dir(kept.Path)))
			}
			if err != nil && !dryRun {
				// The sweep stops at the first failure (nothing after it is touched): name
				// the lease it stopped at and what is left to do.
				for _, d := range decisions {
					if d.Action != "" && !d.Done {
						return exitcode.New(exitcode.Code(err), fmt.Errorf("%w\ncleanup stopped at lease %s (workspace %s): its claim is kept; the remaining expired leases were not touched: retry with `crabbox cleanup`, or release it alone with `crabbox stop %s`",
							err, dash(d.LeaseID), d.Workspace, dash(d.LeaseID)))
					}
				}
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "Print the decisions; change nothing")
	cmd.Flags().StringVar(&releasedOlderThan, "released-older-than", "", "Delete crabbox's released workspaces released at least this long ago (e.g. 7d)")
	addConfigFlags(cmd)
	return cmd
}

// parseAge parses a duration that may also be given in days ("7d",
// "1d12h"); it must not be negative.
func parseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.Atoi(s[:i])
		if err != nil || n < 0 {
			return 0, fmt.Errorf("not a duration")
		}
		days = time.Duration(n) * 24 * time.Hour
		s = s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("not a duration")
	}
	if d < 0 {
		return 0, fmt.Errorf("negative")
	}
	return days + d, nil
}
