package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/coder"
	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/remotecmd"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// ownerTimeout bounds the owner check's one round trip.
const ownerTimeout = 60 * time.Second

// machineID is this state dir's machine ID (created on first use).
func (lc *leaseCtx) machineID() (string, error) {
	id, err := claims.MachineID(config.StateDir(lc.f.Env))
	if err != nil {
		return "", exitcode.New(exitcode.Failure, fmt.Errorf("machine ID: %w", err))
	}
	return id, nil
}

// ownerCheck is the result of one owner round trip.
type ownerCheck struct {
	code   int // OwnerScript's exit code
	record remotecmd.OwnerRecord
	busy   []remotecmd.BusyRun
}

// checkOwner runs remotecmd.OwnerScript for l over sess: one round trip.
func (lc *leaseCtx) checkOwner(ctx context.Context, sess *sshx.Session, l *coder.Lease, reclaim, write bool) (ownerCheck, error) {
	me, err := lc.machineID()
	if err != nil {
		return ownerCheck{}, err
	}
	script := remotecmd.OwnerScript(remotecmd.OwnerParams{
		WorkRoot: lc.cfg.Coder.WorkRoot, LeaseID: l.ID, MachineID: me,
		Now: lc.f.Now().UTC().Format(time.RFC3339), Reclaim: reclaim, Write: write,
	})
	cctx, cancel := context.WithTimeout(ctx, ownerTimeout)
	defer cancel()
	var out, errb strings.Builder
	code, err := sess.Run(cctx, script, nil, &out, &errb)
	if err != nil {
		return ownerCheck{}, err
	}
	oc := ownerCheck{code: code}
	oc.record, oc.busy = remotecmd.ParseOwner(out.String())
	switch code {
	case 0, remotecmd.OwnerForeign, remotecmd.OwnerBusy:
		return oc, nil
	}
	return oc, exitcode.Errorf(exitcode.Transport, "writing the owner record %s/%s on %s failed (exit %d): %s",
		lc.cfg.Coder.WorkRoot, remotecmd.OwnerFile, l.Workspace, code, firstLine(errb.String()))
}

// claimOwner makes this machine the workspace's owner before run or ssh
// uses it (one round trip): a workspace recorded for another machine, or
// with another machine's run in progress, is refused (exit 2, nothing
// changed on the workspace) unless reclaim. A claim this command just
// created (adoption by name) is dropped again on refusal. next is the
// command that takes the workspace over from here.
func (lc *leaseCtx) claimOwner(ctx context.Context, sess *sshx.Session, l *coder.Lease, reclaim bool, next func(ident string) string) error {
	oc, err := lc.checkOwner(ctx, sess, l, reclaim, true)
	if err != nil {
		return err
	}
	if oc.code != 0 && l.Adopted {
		if rerr := lc.provider.Claims.Remove(l.ID); rerr != nil {
			fmt.Fprintf(lc.f.IO.ErrOut, "warning: removing the claim just made for %s: %v\n", l.Workspace, rerr)
		}
	}
	switch {
	case oc.code == remotecmd.OwnerForeign && !l.Adopted:
		return exitcode.Errorf(exitcode.Usage,
			"lease %s was taken over by another machine (machine %s) at %s; its claim here is stale: `crabbox stop %s` drops it (or %s takes it back)",
			l.ID, oc.record.MachineID, dash(oc.record.CreatedAt), l.ID, next(l.ID))
	case oc.code == remotecmd.OwnerForeign:
		return exitcode.Errorf(exitcode.Usage,
			"workspace %s belongs to another machine (machine %s, lease %s, since %s); nothing was changed. To take it over from here: %s",
			l.Workspace, oc.record.MachineID, dash(oc.record.LeaseID), dash(oc.record.CreatedAt), next(l.Workspace))
	case oc.code == remotecmd.OwnerBusy:
		b := oc.busy[0]
		return exitcode.Errorf(exitcode.Usage,
			"workspace %s has a run in progress from another machine (machine %s, run %s); nothing was changed. To take it over anyway (that run's tree may change under it): %s",
			l.Workspace, dash(b.MachineID), b.RunID, next(firstNonEmpty(lc.identAfterAdopt(l), l.ID)))
	}
	if reclaim && oc.record.MachineID != "" {
		if me, _ := lc.machineID(); oc.record.MachineID != me {
			fmt.Fprintf(lc.f.IO.ErrOut, "took over lease %s on %s from machine %s; its next command there will say it lost the lease\n",
				l.ID, l.Workspace, oc.record.MachineID)
		}
	}
	return nil
}

// identAfterAdopt is how a refused adoption names the workspace again (its
// claim was dropped, so the lease ID would not resolve).
func (lc *leaseCtx) identAfterAdopt(l *coder.Lease) string {
	if l.Adopted {
		return l.Workspace
	}
	return ""
}

// stopOwnerGate decides what `stop` may do with a running, claimed
// workspace (one round trip). drop: another machine owns it and has no run
// in progress, so only this machine's stale claim goes and the workspace
// is left alone. A run in progress from another machine refuses (exit 2,
// nothing changed). reclaim skips the gate. A workspace that cannot be
// asked is stopped as before (with a warning).
func (lc *leaseCtx) stopOwnerGate(ctx context.Context, l *coder.Lease, reclaim bool) (drop bool, err error) {
	if reclaim || l.Claim == nil || !l.Ready {
		return false, nil
	}
	sess, err := lc.session(l)
	if err != nil {
		return false, nil
	}
	oc, err := lc.checkOwner(ctx, sess, l, false, false)
	if err != nil {
		fmt.Fprintf(lc.f.IO.ErrOut, "warning: could not read the owner record on %s (%v); stopping it\n", l.Workspace, firstLine(err.Error()))
		return false, nil
	}
	if len(oc.busy) > 0 {
		b := oc.busy[0]
		return false, exitcode.Errorf(exitcode.Usage,
			"refusing to stop lease %s: workspace %s has a run in progress from another machine (machine %s, run %s); nothing was changed. To stop it anyway: `crabbox stop --reclaim %s`",
			l.ID, l.Workspace, dash(b.MachineID), b.RunID, l.ID)
	}
	if oc.code == remotecmd.OwnerForeign {
		return true, nil
	}
	return false, nil
}
