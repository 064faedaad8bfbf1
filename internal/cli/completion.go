package cli

import (
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/runs"
)

func init() { extraCommands = append(extraCommands, newCompletionCmd) }

// What a command's positional arguments complete to. A command may say so
// itself with the annotation completeArgsAnnotation ("lease" or "run");
// the commands below predate it.
const completeArgsAnnotation = "crabbox.complete.args"

var (
	leaseArgCommands = map[string]bool{"ssh": true, "stop": true, "status": true, "inspect": true}
	runArgCommands   = map[string]bool{"logs": true, "results": true}
	// leaseFlags complete to leases wherever a command has them.
	leaseFlags = []string{"id", "lease"}
)

// completionRunLimit caps how many recent runs are offered.
const completionRunLimit = 100

func newCompletionCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: `Print the completion script for a shell on stdout. Lease IDs and slugs
(from this machine's claims) complete after --id, --lease and the lease
argument of ssh, stop, status and inspect; run IDs (from the local history)
after logs and results; cp completes LEASE: prefixes.

  bash:        source <(crabbox completion bash)
               (or save it to ~/.local/share/bash-completion/completions/crabbox)
  zsh:         crabbox completion zsh > "${fpath[1]}/_crabbox"
               (autoload -U compinit && compinit must run in ~/.zshrc)
  fish:        crabbox completion fish > ~/.config/fish/completions/crabbox.fish
  powershell:  crabbox completion powershell | Out-String | Invoke-Expression`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), f.IO.Out
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(out)
			}
			return usageErr("unknown shell %q: use bash, zsh, fish or powershell", args[0])
		},
	}
}

// registerCompletions attaches the dynamic completions to the command
// tree: leases for --id/--lease and lease arguments, run IDs for run
// arguments, LEASE: prefixes for cp.
func registerCompletions(c *cobra.Command, f *Factory) {
	for _, name := range leaseFlags {
		if c.Flags().Lookup(name) != nil {
			if _, ok := c.GetFlagCompletionFunc(name); !ok {
				_ = c.RegisterFlagCompletionFunc(name, func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
					return f.completeLeases(toComplete, ""), cobra.ShellCompDirectiveNoFileComp
				})
			}
		}
	}
	if c.ValidArgsFunction == nil && c.ValidArgs == nil {
		kind := c.Annotations[completeArgsAnnotation]
		switch {
		case kind == "lease" || (kind == "" && leaseArgCommands[c.Name()]):
			c.ValidArgsFunction = func(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				if len(args) > 0 {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				return f.completeLeases(toComplete, ""), cobra.ShellCompDirectiveNoFileComp
			}
		case kind == "run" || (kind == "" && runArgCommands[c.Name()]):
			c.ValidArgsFunction = func(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				if len(args) > 0 {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				return f.completeRuns(toComplete), cobra.ShellCompDirectiveNoFileComp
			}
		case c.Name() == "cp":
			c.ValidArgsFunction = func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				return f.completeCpOperand(toComplete)
			}
		case c.Name() == "tunnel":
			c.ValidArgsFunction = cobra.NoFileCompletions
		}
	}
	for _, sub := range c.Commands() {
		registerCompletions(sub, f)
	}
}

// completeLeases lists this machine's claimed leases whose ID or slug
// starts with toComplete, as "ID<suffix>\tdescription" and
// "slug<suffix>\tlease ID". Unreadable claims are skipped; nothing is
// printed or changed.
func (f *Factory) completeLeases(toComplete, suffix string) []string {
	dir := config.StateDir(f.Env)
	if dir == "" {
		return nil
	}
	list, _, err := claims.New(dir).List()
	if err != nil {
		return nil
	}
	var out []string
	for _, c := range list {
		desc := "lease"
		if c.Slug != "" {
			desc = "slug " + c.Slug
		}
		if c.Provider != "" {
			desc += ", " + c.Provider
		}
		if c.RepoRoot != "" {
			desc += ", " + filepath.Base(c.RepoRoot)
		}
		if strings.HasPrefix(c.LeaseID, toComplete) {
			out = append(out, c.LeaseID+suffix+"\t"+completionDesc(desc))
		}
		if c.Slug != "" && strings.HasPrefix(c.Slug, toComplete) {
			out = append(out, c.Slug+suffix+"\t"+completionDesc("lease "+c.LeaseID))
		}
	}
	return out
}

// completeRuns lists the newest recorded runs whose ID starts with
// toComplete, as "ID\tstate command".
func (f *Factory) completeRuns(toComplete string) []string {
	dir := config.StateDir(f.Env)
	if dir == "" {
		return nil
	}
	recs, err := runs.New(dir).List(runs.Filter{Limit: completionRunLimit})
	if err != nil {
		return nil
	}
	var out []string
	for _, r := range recs {
		if strings.HasPrefix(r.ID, toComplete) {
			out = append(out, r.ID+"\t"+completionDesc(r.State+" "+runs.CommandLine(r.Command, r.Shell)))
		}
	}
	return out
}

// completeCpOperand offers "LEASE:" for a word that starts a lease's ID
// or slug when no local name starts with it; otherwise local files.
// Remote paths are not completed (that would need the lease).
func (f *Factory) completeCpOperand(toComplete string) ([]string, cobra.ShellCompDirective) {
	if strings.Contains(toComplete, ":") {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	if toComplete == "" {
		return nil, cobra.ShellCompDirectiveDefault
	}
	if local, _ := filepath.Glob(globEscape(toComplete) + "*"); len(local) > 0 {
		return nil, cobra.ShellCompDirectiveDefault
	}
	if leases := f.completeLeases(toComplete, ":"); len(leases) > 0 {
		return leases, cobra.ShellCompDirectiveNoSpace | cobra.ShellCompDirectiveNoFileComp
	}
	return nil, cobra.ShellCompDirectiveDefault
}

// globEscape makes s literal in a filepath.Glob pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// completionDesc is a description on one line, not too long.
func completionDesc(s string) string {
	s = strings.ReplaceAll(runs.Escape(s), "\t", " ")
	if len(s) > 60 {
		s = strings.ToValidUTF8(s[:59], "") + "…"
	}
	return s
}
