package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/provider"
)

// Status polling (status --wait).
const (
	statusPollInterval = 5 * time.Second
	probeTimeout       = 8 * time.Second
)

// terminalStates end a status --wait before ready.
var terminalStates = map[string]bool{
	"deleting": true, "deleted": true, "expired": true, "failed": true, "missing": true,
	"released": true, "stopped": true, "stopped_with_code": true, "terminated": true,
	"canceled": true, "cancelled": true,
}

type statusOptions struct {
	id          string
	wait        bool
	waitTimeout time.Duration
	asJSON      bool
}

func newStatusCmd(f *Factory) *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status [LEASE]",
		Short: "Show one lease's state (read-only; never starts a workspace)",
		Long: `Show one lease: its state, and whether it answers over SSH right now.
LEASE is a lease ID, slug, workspace name or owner/workspace (or --id).

status never starts, stops or changes anything. With --wait it polls every
5 s until the lease is ready or reaches a terminal state (a stopped workspace
is terminal: start it with 'crabbox ssh' or 'crabbox run --id').

EXIT STATUS
  0  shown (with --wait: ready)
  2  usage error
  5  not found, ambiguous, terminal before ready, or timed out waiting`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lc, ident, err := f.openNamedLease(cmd, o.id, args)
			if err != nil {
				return err
			}
			defer lc.close()
			v, err := lc.statusView(cmd.Context(), ident, o)
			if err != nil {
				return err
			}
			if o.asJSON {
				return writeJSON(f.IO.Out, v)
			}
			fmt.Fprintln(f.IO.Out, statusLine(v))
			return nil
		},
	}
	cmd.Flags().StringVar(&o.id, "id", "", "Lease ID, slug, workspace name or owner/workspace")
	cmd.Flags().BoolVar(&o.wait, "wait", false, "Wait until the lease is ready")
	cmd.Flags().DurationVar(&o.waitTimeout, "wait-timeout", 5*time.Minute, "How long --wait waits")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "Print JSON")
	addConfigFlags(cmd)
	return cmd
}

// statusView resolves read-only and probes readiness; with o.wait it polls.
func (lc *leaseCtx) statusView(ctx context.Context, ident string, o *statusOptions) (leaseView, error) {
	deadline := lc.f.Now().Add(o.waitTimeout)
	var p interface{ Done(error) time.Duration }
	for {
		l, err := lc.provider.Resolve(ctx, provider.ResolveRequest{Ident: ident, Mode: provider.StatusOnly})
		if err != nil {
			if p != nil {
				p.Done(err)
			}
			return leaseView{}, err
		}
		ready := l.Ready && lc.probe(ctx, l, probeTimeout)
		v := newLeaseView(l, ready, lc.f.Now())
		if ready {
			v.State = provider.StateReady
		}
		if !o.wait || ready {
			if p != nil {
				p.Done(nil)
			}
			return v, nil
		}
		if terminalStates[l.State] {
			if p != nil {
				p.Done(fmt.Errorf("terminal"))
			}
			return v, exitcode.Errorf(exitcode.NotFound, "lease %s reached terminal state %s before ready; start it with `crabbox ssh %s`", l.ID, l.State, ident)
		}
		if !lc.f.Now().Before(deadline) {
			if p != nil {
				p.Done(fmt.Errorf("timeout"))
			}
			return v, exitcode.Errorf(exitcode.NotFound, "timed out waiting for %s to become ready (state=%s after %s)", l.ID, l.State, o.waitTimeout)
		}
		if p == nil {
			p = lc.f.IO.StartProgress("waiting for " + l.Workspace + " to become ready")
		}
		select {
		case <-ctx.Done():
			p.Done(ctx.Err())
			return v, ctx.Err()
		case <-time.After(min(statusPollInterval, time.Until(deadline)+time.Millisecond)):
		}
	}
}

func newInspectCmd(f *Factory) *cobra.Command {
	var id string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect [LEASE]",
		Short: "Show everything known about one lease (read-only)",
		Long: `Show one lease in long form: one key=value per line, then every label as
label.<key>=<value>. With --json, the same normalized object as status --json.
Read-only.

EXIT STATUS
  0  shown
  2  usage error
  5  not found or ambiguous`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lc, ident, err := f.openNamedLease(cmd, id, args)
			if err != nil {
				return err
			}
			defer lc.close()
			v, err := lc.statusView(cmd.Context(), ident, &statusOptions{})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(f.IO.Out, v)
			}
			inspectLines(f.IO.Out, v)
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "Lease ID, slug, workspace name or owner/workspace")
	cmd.Flags().BoolVar(&asJSON, "json", false, "Print JSON")
	addConfigFlags(cmd)
	return cmd
}
