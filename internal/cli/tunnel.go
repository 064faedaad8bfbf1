package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/crabbox-dev/crabbox/internal/portfwd"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

func init() { extraCommands = append(extraCommands, newTunnelCmd) }

func newTunnelCmd(f *Factory) *cobra.Command {
	var id string
	var reclaim bool
	cmd := &cobra.Command{
		Use:   "tunnel --id LEASE LOCALPORT[:REMOTEPORT]...",
		Short: "Forward local ports to a lease's loopback until Ctrl-C",
		Long: `Forward 127.0.0.1:LOCALPORT on this machine to 127.0.0.1:REMOTEPORT on the
lease (REMOTEPORT defaults to LOCALPORT), over the lease's ssh connection,
until Ctrl-C. Both ends are loopback only: the forward never listens on
another address of this machine and reaches only what listens on the
machine's 127.0.0.1 (or on all its addresses).

A LOCALPORT something already listens on is refused before anything is set
up. While the tunnel runs, the lease's claim is marked used every minute
(cleanup does not count it as idle), and a session on the machine keeps
the connection in use; a connection that drops is set up again, else the
tunnel ends (exit 7).

The lease is made ready (a stopped workspace is started) and claimed for
this repository, as by 'crabbox ssh'.

stdout: one line per forward once it is up:
  forwarding 127.0.0.1:<local> -> 127.0.0.1:<remote> on <workspace>

EXIT STATUS
  0  ended by Ctrl-C (or SIGTERM)
  2  usage error, a local port in use, or a claim conflict (use --reclaim)
  5  lease not found, ambiguous or timed out waiting
  7  the tunnel to the lease failed`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if id == "" {
				return usageErr("which lease? crabbox tunnel --id LEASE LOCALPORT[:REMOTEPORT]...")
			}
			forwards, err := portfwd.ParseSpecs(args)
			if err != nil {
				return err
			}
			// A taken port is refused before the lease is touched.
			for _, fw := range forwards {
				if err := portfwd.CheckFree(fw.Local); err != nil {
					return err
				}
			}
			lc, err := f.openLeaseWith(cmd, providerFromLease, id, false)
			if err != nil {
				return err
			}
			defer lc.close()
			ctx := cmd.Context()
			l, sess, err := lc.prepareLease(ctx, id, reclaim, true, func(ident string) string {
				return "crabbox tunnel --reclaim --id " + ident + " …"
			})
			if err != nil {
				return err
			}
			return portfwd.Run(ctx, sess, portfwd.Options{
				Forwards: forwards,
				Touch:    func() error { return lc.claims.Touch(l.ID, f.Now()) },
				Ready: func(up []sshx.LocalForward) {
					for _, fw := range up {
						fmt.Fprintf(f.IO.Out, "forwarding 127.0.0.1:%d -> 127.0.0.1:%d on %s\n", fw.Local, fw.Remote, l.Workspace)
					}
					fmt.Fprintf(f.IO.ErrOut, "tunnel to lease %s open; press Ctrl-C to close it\n", l.ID)
				},
				Warn: func(msg string) { fmt.Fprintf(f.IO.ErrOut, "warning: %s\n", msg) },
				Restored: func() {
					fmt.Fprintf(f.IO.ErrOut, "the connection to %s dropped; the forwards are set up again\n", l.Workspace)
				},
			})
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "Lease ID, slug, workspace name or owner/workspace")
	cmd.Flags().BoolVar(&reclaim, "reclaim", false, "Take over a claim bound to another repository, or a workspace owned by another machine")
	addConfigFlags(cmd)
	return cmd
}
