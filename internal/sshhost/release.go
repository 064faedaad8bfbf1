package sshhost

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/owner"
	"github.com/crabbox-dev/crabbox/internal/provider"
)

// Skipped reasons of a release.
const (
	SkippedUnreachable = "host unreachable: its owner record was left in place"
	SkippedForeign     = "another machine owns the host now: its owner record was left alone"
)

// Release hands a claimed host back: one round trip drops this machine's
// owner record of the lease (and, when cleanWorkdir says so, the lease's
// work dir <workRoot>/<leaseID>), then the local claim goes. The host is
// never shut down and nothing else on it is removed. A host that cannot be
// reached still loses its local claim, with a warning event. Refused (exit
// 2, nothing changed): a host without a claim here, and a claim bound to
// another repository without req.Reclaim. The Action is always
// provider.ActionForget.
func (p *Provider) Release(ctx context.Context, l *Lease, req ReleaseRequest) (ReleaseResult, error) {
	res := ReleaseResult{Action: provider.ActionForget}
	if l == nil || l.Claim == nil {
		name := ""
		if l != nil {
			name = l.Workspace
		}
		return res, exitcode.Refusef(
			"refusing to release ssh host %s: it has no crabbox claim on this machine, so no lease of this machine holds it; nothing was changed", name)
	}
	if c := l.Claim; req.RepoRoot != "" && c.RepoRoot != "" && !req.Reclaim && filepath.Clean(c.RepoRoot) != filepath.Clean(req.RepoRoot) {
		return res, exitcode.Refusef(
			"refusing to release lease %s: it is claimed by repo %s, not %s; nothing was changed. To release it from here: %s",
			l.ID, c.RepoRoot, req.RepoRoot, exitcode.Next("crabbox stop --reclaim "+l.ID))
	}
	p.emit(Event{Kind: provider.EventReleasing, Lease: l, Action: provider.ActionForget})
	out, err := p.dropRemote(ctx, l, p.cleanWorkdir(l))
	p.emit(Event{Kind: provider.EventDone, Lease: l, Err: err})
	switch {
	case err != nil:
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		res.Skipped = SkippedUnreachable
		p.warnf("could not reach ssh host %s to drop lease %s's owner record (%s); the local claim is dropped anyway. The record names this machine: this machine takes the host over on its next claim, another machine needs --reclaim",
			l.Workspace, l.ID, execx.FirstLine(err.Error()))
	case out.foreign:
		res.Skipped = SkippedForeign
	}
	if err := p.Claims.Remove(l.ID); err != nil {
		return res, exitcode.New(exitcode.Failure, &provider.ClaimKeptError{LeaseID: l.ID, Path: p.Claims.Path(l.ID), Result: res, Err: err})
	}
	return res, nil
}

// dropRemote runs releaseScript on l's host (one round trip).
func (p *Provider) dropRemote(ctx context.Context, l *Lease, clean bool) (releaseOutcome, error) {
	if l.Target.Host == "" {
		return releaseOutcome{}, fmt.Errorf("lease %s records no host", l.ID)
	}
	me, err := p.owners().MachineID()
	if err != nil {
		return releaseOutcome{}, err
	}
	var out releaseOutcome
	err = p.withRemote(l, func(r *hostRemote) error {
		cctx, cancel := context.WithTimeout(ctx, owner.Timeout)
		defer cancel()
		var stdout, stderr strings.Builder
		code, err := r.Run(cctx, releaseScript(l.Target.WorkRoot, me, l.ID, clean), nil, &stdout, &stderr)
		if err != nil {
			return err
		}
		if code != 0 {
			return exitcode.Errorf(exitcode.Transport, "releasing lease %s on host %s failed (exit %d): %s", l.ID, l.Workspace, code, execx.FirstLine(stderr.String()))
		}
		out = parseRelease(stdout.String())
		return nil
	})
	return out, err
}

// Cleanup releases leases whose claim expired (claims.Claim.Expired) and
// are not kept: owner record and claim go, as in Release; the host is
// never touched otherwise. With DryRun nothing changes.
func (p *Provider) Cleanup(ctx context.Context, req CleanupRequest) ([]CleanupDecision, error) {
	cs, err := p.sshClaims()
	if err != nil {
		return nil, err
	}
	now := p.now()
	var out []CleanupDecision
	for _, c := range cs {
		l := p.buildLease(p.hostForClaim(c), &c)
		d := CleanupDecision{Workspace: l.Workspace, Ref: l.Ref, LeaseID: c.LeaseID, WorkspaceID: l.WorkspaceID}
		switch {
		case l.Keep:
			d.Reason = "keep=true"
		case !c.Expired(now):
			d.Reason = "claim active"
		default:
			d.Action, d.Reason = provider.ActionForget, "claim expired"
		}
		out = append(out, d)
	}
	if req.DryRun {
		return out, nil
	}
	for i := range out {
		d := &out[i]
		if d.Action == "" {
			continue
		}
		c := findClaim(cs, d.LeaseID)
		// Re-read under the claim's own lock: a command may have used (and
		// refreshed) the lease since the listing.
		cur, err := p.Claims.Get(d.LeaseID)
		if err != nil {
			return out, err
		}
		if cur == nil {
			d.Reason = "claim already gone"
			continue
		}
		if !cur.Expired(p.now()) {
			d.Action, d.Reason = "", "claim active (used meanwhile)"
			continue
		}
		l := p.buildLease(p.hostForClaim(*c), cur)
		if _, err := p.Release(ctx, l, ReleaseRequest{}); err != nil {
			return out, err
		}
		d.Done = true
	}
	return out, nil
}

func findClaim(cs []claims.Claim, id string) *claims.Claim {
	for i := range cs {
		if cs[i].LeaseID == id {
			return &cs[i]
		}
	}
	return nil
}

// List returns the configured hosts, each with this machine's claim (or
// free), then claimed hosts no longer configured. Other machines are not
// asked; all changes nothing.
func (p *Provider) List(ctx context.Context, all bool) ([]*Lease, error) {
	cs, err := p.sshClaims()
	if err != nil {
		return nil, err
	}
	var out []*Lease
	used := map[string]bool{}
	for i := range p.Settings.Hosts {
		h := &p.Settings.Hosts[i]
		c := claimForHost(*h, cs)
		if c != nil {
			used[c.LeaseID] = true
		}
		out = append(out, p.buildLease(h, c))
	}
	for i := range cs {
		if !used[cs[i].LeaseID] {
			out = append(out, p.buildLease(p.hostForClaim(cs[i]), &cs[i]))
		}
	}
	return out, nil
}
