// Package cli holds crabbox's command tree: flags to options, one call into
// a package that does the work, and rendering. It maps errors to exit codes
// in one place (Main).
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/gitrepo"
	"github.com/crabbox-dev/crabbox/internal/iostreams"
)

// Version is set at build time with -ldflags "-X .../internal/cli.Version=...".
var Version = "dev"

// Factory carries everything a command needs from the outside world.
type Factory struct {
	IO     *iostreams.IOStreams
	Env    func(string) (string, bool)
	Runner execx.Runner
	Now    func() time.Time
	Getwd  func() (string, error)

	rootOnce sync.Once
	root     string
	prefix   string // the working directory below root, slash-separated ("" at the root)
}

// SystemFactory wires the real process environment.
func SystemFactory(ios *iostreams.IOStreams) *Factory {
	return &Factory{IO: ios, Env: os.LookupEnv, Runner: execx.OS{}, Now: time.Now, Getwd: os.Getwd}
}

// Main runs crabbox with args and returns the process exit code.
func Main(ctx context.Context, args []string, f *Factory) int {
	root := NewRootCmd(f)
	root.SetArgs(args)
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.ErrOut)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitcode.OK
	}
	code := exitcode.Code(err)
	var ee *exitcode.Error
	if !(errors.As(err, &ee) && ee.Err == nil) {
		fmt.Fprintf(f.IO.ErrOut, "crabbox: %s\n", err)
	}
	return code
}

// NewRootCmd builds the command tree.
func NewRootCmd(f *Factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "crabbox",
		Short: "Run your repository's command on a remote Coder workspace",
		Long: `crabbox leases a Coder workspace, syncs your dirty git working tree to it,
runs a command there with live output, records the run, and releases the
workspace.

Primary results go to stdout; progress and diagnostics go to stderr.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return exitcode.New(exitcode.Usage, fmt.Errorf("%w\nrun '%s --help' for usage", err, c.CommandPath()))
	})
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(
		newVersionCmd(f),
		newConfigCmd(f),
		newClaimsCmd(f),
		newDoctorCmd(f),
		newWarmupCmd(f),
		newStatusCmd(f),
		newInspectCmd(f),
		newListCmd(f),
		newSSHCmd(f),
		newStopCmd(f),
		newCleanupCmd(f),
		newRunCmd(f),
	)
	for _, add := range extraCommands {
		root.AddCommand(add(f))
	}
	registerCompletions(root, f)
	// Unknown sub-commands and bad positional args are usage errors (exit 2).
	wrapArgs(root)
	return root
}

// extraCommands lets command files register themselves.
var extraCommands []func(*Factory) *cobra.Command

func wrapArgs(c *cobra.Command) {
	if c.Args != nil {
		orig := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := orig(cmd, args); err != nil {
				return exitcode.New(exitcode.Usage, err)
			}
			return nil
		}
	} else if c.HasSubCommands() {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return exitcode.Errorf(exitcode.Usage, "unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return nil
		}
		c.RunE = func(cmd *cobra.Command, args []string) error { return cmd.Help() }
	}
	for _, sub := range c.Commands() {
		wrapArgs(sub)
	}
}

// usageErr is a shorthand for an exit-2 error.
func usageErr(format string, args ...any) error {
	return exitcode.Errorf(exitcode.Usage, format, args...)
}

// repoRoot returns the git top-level of the working directory, or "".
// It is asked once per process.
func (f *Factory) repoRoot(ctx context.Context) string {
	f.rootOnce.Do(func() { f.root, f.prefix = f.findRepoRoot(ctx) })
	return f.root
}

// repoPrefix is the working directory relative to the repository root
// ("tools/cfg"), "" at the root or outside a repository.
func (f *Factory) repoPrefix(ctx context.Context) string {
	f.repoRoot(ctx)
	return f.prefix
}

// findRepoRoot reads the top level and the working directory's path
// below it from the repository's own files, or, where they leave any
// doubt, asks git for both in one call.
func (f *Factory) findRepoRoot(ctx context.Context) (root, prefix string) {
	dir, err := f.Getwd()
	if err != nil {
		return "", ""
	}
	if root, prefix, ok := gitrepo.Toplevel(dir); ok {
		return root, cleanPrefix(prefix)
	}
	res, err := f.Runner.Run(ctx, execx.Cmd{Name: "git", Args: []string{"rev-parse", "--show-toplevel", "--show-prefix"}, Dir: dir, Timeout: 10 * time.Second})
	if err != nil {
		return "", ""
	}
	lines := strings.Split(strings.TrimRight(string(res.Stdout), "\n"), "\n")
	root = strings.TrimSpace(lines[0])
	if len(lines) > 1 {
		prefix = cleanPrefix(lines[1])
	}
	return root, prefix
}

// cleanPrefix accepts git's --show-prefix only as a clean relative path
// ("a/b/"): anything else runs at the repository root.
func cleanPrefix(p string) string {
	p = strings.TrimSuffix(p, "/")
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") {
		return ""
	}
	return p
}
