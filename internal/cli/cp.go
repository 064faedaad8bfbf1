package cli

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox-dev/crabbox/internal/iostreams"
	"github.com/crabbox-dev/crabbox/internal/syncer"
	"github.com/crabbox-dev/crabbox/internal/transfer"
)

func init() { extraCommands = append(extraCommands, newCpCmd) }

func newCpCmd(f *Factory) *cobra.Command {
	var id string
	var recursive, reclaim bool
	cmd := &cobra.Command{
		Use:   "cp [flags] SOURCE... DEST",
		Short: "Copy files between this machine and a lease's workdir",
		Long: `Copy files to a lease or back, with rsync over the lease's ssh tunnel:

  crabbox cp [-r] LOCAL... LEASE:REMOTE     to the lease
  crabbox cp [-r] LEASE:REMOTE... LOCAL     from the lease

LEASE is a lease ID, slug, workspace name or owner/workspace; with --id,
":REMOTE" is enough. A relative REMOTE is below the lease's workdir
<workRoot>/<lease>/<repo> (LEASE: alone is the workdir itself) and may not
leave it; an absolute REMOTE is taken as it is.

Where a copy lands follows cp -r, not rsync: a single source copied onto an
existing directory goes inside it, onto a missing name becomes that name;
several sources go inside DEST (made when missing). Trailing slashes make
no difference. Directories need -r. Modes and times are kept, symlinks are
copied as links, and setuid/setgid bits from the lease are dropped.

Names are passed literally: spaces, quotes and * ? [ reach rsync as they
are (no remote shell, no wildcards). A local name with ':' is written
./name; a local name starting with '-' goes after '--' (crabbox cp -- -x
LEASE:). On a terminal a copy that takes a while shows rsync's progress.

The lease is made ready (a stopped workspace is started) and claimed for
this repository, as by 'crabbox ssh'.

EXIT STATUS
  0  copied
  1  a missing source, or a destination of the wrong kind
  2  usage error (a directory without -r, a remote path leaving the
     workdir, a claim conflict: use --reclaim)
  5  lease not found, ambiguous or timed out waiting
  6  rsync failed
  7  the tunnel to the lease failed`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			plan, err := transfer.ParseArgs(args, id)
			if err != nil {
				return err
			}
			lc, err := f.openLeaseOpt(cmd, providerFromLease, plan.Lease)
			if err != nil {
				return err
			}
			defer lc.close()
			ctx := cmd.Context()
			l, sess, err := lc.prepareLease(ctx, plan.Lease, reclaim, true, func(ident string) string {
				return "crabbox cp --reclaim --id " + ident + " …"
			})
			if err != nil {
				return err
			}
			workdir := syncer.WorkdirFor(l.Target.WorkRoot, l.ID, syncer.RepoName(ctx, f.Runner, lc.repoRoot))
			o := transfer.Options{Workdir: workdir, Recursive: recursive}
			if f.IO.IsStderrTTY() {
				pw := newDelayedWriter(f.IO.ErrOut, iostreams.ProgressDelay)
				defer pw.finish()
				o.Progress = pw
			}
			o.Retrying = func(err error) {
				fmt.Fprintf(f.IO.ErrOut, "cp: %v; retrying once over a new tunnel\n", err)
			}
			return transfer.Copy(ctx, f.Runner, sess, plan, o)
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "Lease ID, slug, workspace name or owner/workspace (then :REMOTE names the lease's side)")
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "Copy directories")
	cmd.Flags().BoolVar(&reclaim, "reclaim", false, "Take over a claim bound to another repository, or a workspace owned by another machine")
	addConfigFlags(cmd)
	return cmd
}

// delayedWriter passes rsync's progress through only once the copy has
// taken longer than delay, so a quick copy prints nothing; finish ends a
// shown progress line.
type delayedWriter struct {
	w     io.Writer
	until time.Time
	mu    sync.Mutex
	shown bool
}

func newDelayedWriter(w io.Writer, delay time.Duration) *delayedWriter {
	return &delayedWriter{w: w, until: time.Now().Add(delay)}
}

func (d *delayedWriter) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.shown && time.Now().Before(d.until) {
		return len(p), nil
	}
	d.shown = true
	_, _ = d.w.Write(p)
	return len(p), nil
}

func (d *delayedWriter) finish() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.shown {
		_, _ = io.WriteString(d.w, "\n")
	}
}
