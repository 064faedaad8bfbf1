// Package owner keeps one owner per remote machine across machines: the
// owner record under the machine's work root names the state dir (machine
// ID) that owns the lease, and a run in progress there names its machine.
// One round trip reads (and, when allowed, writes) it.
package owner

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/provider"
	"github.com/crabbox-dev/crabbox/internal/remotecmd"
)

// Timeout bounds the owner check's one round trip.
const Timeout = 60 * time.Second

// Remote runs a shell command on the machine (*sshx.Session does).
type Remote interface {
	Run(ctx context.Context, remote string, stdin io.Reader, stdout, stderr io.Writer) (int, error)
}

// Checker checks and records ownership for one state dir.
type Checker struct {
	StateDir string
	Claims   *claims.Store
	Now      func() time.Time
	// Warn receives what the user should know (never nil in use).
	Warn func(msg string)
}

// MachineID is this state dir's machine ID (created on first use).
func (c *Checker) MachineID() (string, error) {
	id, err := claims.MachineID(c.StateDir)
	if err != nil {
		return "", exitcode.New(exitcode.Failure, fmt.Errorf("machine ID: %w", err))
	}
	return id, nil
}

// Result is what one owner round trip found.
type Result struct {
	Code   int // OwnerScript's exit code
	Record remotecmd.OwnerRecord
	Busy   []remotecmd.BusyRun
}

// Script is the owner round trip's remote command for l
// (remotecmd.OwnerScript): with write the record is written for this
// machine unless another machine owns l (or runs a command there) and
// reclaim is false. Its exit code and output make a Result (ParseResult).
func (c *Checker) Script(l *provider.Lease, reclaim, write bool) (string, error) {
	me, err := c.MachineID()
	if err != nil {
		return "", err
	}
	return remotecmd.OwnerScript(remotecmd.OwnerParams{
		WorkRoot: l.Target.WorkRoot, LeaseID: l.ID, MachineID: me,
		Now: c.Now().UTC().Format(time.RFC3339), Reclaim: reclaim, Write: write,
	}), nil
}

// ParseResult reads what Script printed and its exit code; a code that is
// neither success nor a verdict is an error (the record could not be
// written), with detail (the script's stderr) in it.
func ParseResult(l *provider.Lease, code int, out, detail string) (Result, error) {
	res := Result{Code: code}
	res.Record, res.Busy = remotecmd.ParseOwner(out)
	switch code {
	case 0, remotecmd.OwnerForeign, remotecmd.OwnerBusy:
		return res, nil
	}
	return res, exitcode.Errorf(exitcode.Transport, "writing the owner record %s/%s on %s failed (exit %d): %s",
		l.Target.WorkRoot, remotecmd.OwnerFile, l.Workspace, code, execx.FirstLine(detail))
}

// Check runs Script for l: one round trip.
func (c *Checker) Check(ctx context.Context, r Remote, l *provider.Lease, reclaim, write bool) (Result, error) {
	script, err := c.Script(l, reclaim, write)
	if err != nil {
		return Result{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	var out, errb strings.Builder
	code, err := r.Run(cctx, script, nil, &out, &errb)
	if err != nil {
		return Result{}, err
	}
	return ParseResult(l, code, out.String(), errb.String())
}

// Claim makes this machine l's owner before a command uses it (one round
// trip): a machine recorded for another state dir, or with another
// machine's run in progress, is refused (exit 2, nothing changed on it)
// unless reclaim. A claim this command just created (adoption by name) is
// dropped again on refusal. takeOver is the crabbox command that takes the
// lease over from here for an identifier (e.g. "crabbox ssh --reclaim
// blue"); the refusal shows it as exitcode.Next.
func (c *Checker) Claim(ctx context.Context, r Remote, l *provider.Lease, reclaim bool, takeOver func(ident string) string) error {
	res, err := c.Check(ctx, r, l, reclaim, true)
	if err != nil {
		return err
	}
	return c.Decide(l, reclaim, res, takeOver)
}

// Decide is Claim's verdict on the Result of a Script(l, reclaim, true)
// that ran (alone, or folded into another round trip).
func (c *Checker) Decide(l *provider.Lease, reclaim bool, res Result, takeOver func(ident string) string) error {
	if res.Code != 0 && l.Adopted {
		if rerr := c.Claims.Remove(l.ID); rerr != nil {
			c.Warn(fmt.Sprintf("removing the claim just made for %s: %v", l.Workspace, rerr))
		}
	}
	switch {
	case res.Code == remotecmd.OwnerForeign && !l.Adopted:
		return exitcode.Refusef(
			"lease %s was taken over by another machine (machine %s) at %s; its claim here is stale (`%s` would take it back); to drop it: %s",
			l.ID, res.Record.MachineID, dash(res.Record.CreatedAt), takeOver(l.ID), exitcode.Next("crabbox stop "+l.ID))
	case res.Code == remotecmd.OwnerForeign:
		return exitcode.Refusef(
			"%s belongs to another machine (machine %s, lease %s, since %s); nothing was changed. To take it over from here: %s",
			describe(l), res.Record.MachineID, dash(res.Record.LeaseID), dash(res.Record.CreatedAt), exitcode.Next(takeOver(l.Workspace)))
	case res.Code == remotecmd.OwnerBusy:
		b := remotecmd.BusyRun{RunID: "-"}
		if len(res.Busy) > 0 {
			b = res.Busy[0]
		}
		ident := l.ID
		if l.Adopted {
			ident = l.Workspace // its claim was dropped: the lease ID would not resolve
		}
		return exitcode.Refusef(
			"%s has a run in progress from another machine (machine %s, run %s); nothing was changed. To take it over anyway (that run's tree may change under it): %s",
			describe(l), dash(b.MachineID), b.RunID, exitcode.Next(takeOver(ident)))
	}
	if reclaim && res.Record.MachineID != "" {
		if me, _ := c.MachineID(); res.Record.MachineID != me {
			c.Warn(fmt.Sprintf("took over lease %s on %s from machine %s; its next command there will say it lost the lease",
				l.ID, l.Workspace, res.Record.MachineID))
		}
	}
	return nil
}

// StopGate decides what `stop` may do with a ready, claimed lease (one
// round trip). drop: another machine owns it and has no run in progress,
// so only this machine's stale claim goes and the machine is left alone. A
// run in progress from another machine refuses (exit 2, nothing changed).
// reclaim skips the gate. A machine that cannot be asked is released as
// before (with a warning).
func (c *Checker) StopGate(ctx context.Context, r Remote, l *provider.Lease, reclaim bool) (drop bool, err error) {
	if reclaim || l.Claim == nil || !l.Ready || r == nil {
		return false, nil
	}
	res, err := c.Check(ctx, r, l, false, false)
	if err != nil {
		c.Warn(fmt.Sprintf("could not read the owner record on %s (%v); releasing it", l.Workspace, execx.FirstLine(err.Error())))
		return false, nil
	}
	if len(res.Busy) > 0 {
		b := res.Busy[0]
		return false, exitcode.Refusef(
			"refusing to stop lease %s: %s has a run in progress from another machine (machine %s, run %s); nothing was changed. To stop it anyway: %s",
			l.ID, describe(l), dash(b.MachineID), b.RunID, exitcode.Next("crabbox stop --reclaim "+l.ID))
	}
	return res.Code == remotecmd.OwnerForeign, nil
}

// describe names l's machine the way its provider calls it.
func describe(l *provider.Lease) string {
	if l.Provider == "ssh" {
		return "host " + l.Workspace
	}
	return "workspace " + l.Workspace
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
