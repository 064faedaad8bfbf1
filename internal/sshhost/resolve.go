package sshhost

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/provider"
)

// Resolve finds the lease req.Ident names: a claim here by lease ID, slug,
// host name, user@host:port or host:port, else a configured host by name,
// user@host:port or host:port (then unclaimed: State free). StatusOnly and
// ReleaseOnly change nothing anywhere. Prepare claims the host for
// req.RepoRoot: a claim bound to another repo needs req.Reclaim; a free
// configured host is adopted with a new lease (claim under the allocation
// lock); then the owner record is written (one round trip; another
// machine's host, or one where another machine runs a command, is refused
// with exit 2 unless req.Reclaim, and an adoption's claim is dropped
// again) and the host is checked (req.Open, else req.Ready).
func (p *Provider) Resolve(ctx context.Context, req ResolveRequest) (*Lease, error) {
	ident := strings.TrimSpace(req.Ident)
	if ident == "" {
		return nil, exitcode.Errorf(exitcode.Usage, "ssh resolve requires a lease id, slug, host name or user@host:port")
	}
	cs, err := p.sshClaims()
	if err != nil {
		return nil, err
	}
	l, err := p.pick(ident, cs)
	if err != nil {
		return nil, err
	}
	if req.Mode != provider.Prepare {
		return l, nil
	}
	return p.prepare(ctx, l, req)
}

// pick is the lease ident names (no mutation).
func (p *Provider) pick(ident string, cs []claims.Claim) (*Lease, error) {
	var matched []claims.Claim
	for _, c := range cs {
		if claimMatches(c, ident) {
			matched = append(matched, c)
		}
	}
	chosen, err := claims.Pick(matched, ident)
	if err != nil {
		return nil, err
	}
	if chosen != nil {
		return p.buildLease(p.hostForClaim(*chosen), chosen), nil
	}
	var hits []*Host
	for i := range p.Settings.Hosts {
		if hostMatches(p.Settings.Hosts[i], ident) {
			hits = append(hits, &p.Settings.Hosts[i])
		}
	}
	switch len(hits) {
	case 0:
		return nil, exitcode.Errorf(exitcode.NotFound, "ssh host or lease %q not found; `crabbox list --provider ssh` shows the configured hosts and this machine's leases", ident)
	case 1:
		return p.buildLease(hits[0], claimForHost(*hits[0], cs)), nil
	}
	return nil, exitcode.Errorf(exitcode.NotFound, "ssh host %q is ambiguous: %d configured hosts match; use its name", ident, len(hits))
}

// prepare claims l's host for req.RepoRoot (see Resolve).
func (p *Provider) prepare(ctx context.Context, l *Lease, req ResolveRequest) (*Lease, error) {
	if l.State == StateUnconfigured {
		return nil, exitcode.Refusef(
			"ssh host %s of lease %s is no longer in ssh.hosts, so crabbox does not use it; add the host back, or release the lease: %s", l.Workspace, l.ID, exitcode.Next("crabbox stop "+l.ID))
	}
	if c := l.Claim; c != nil && c.RepoRoot != "" && req.RepoRoot != "" && !req.Reclaim && filepath.Clean(c.RepoRoot) != filepath.Clean(req.RepoRoot) {
		return nil, exitcode.Refusef("lease %s is claimed by repo %s; use --reclaim to claim it for %s", l.ID, c.RepoRoot, req.RepoRoot)
	}
	if l.Claim == nil {
		if req.RepoRoot == "" {
			return nil, exitcode.Errorf(exitcode.Usage, "ssh host %s has no claim here, and using it needs a repository to claim it for", l.Workspace)
		}
		adopted, err := p.adopt(l, req)
		if err != nil {
			return nil, err
		}
		l = adopted
	}
	ident := l.ID
	if l.Adopted {
		ident = l.Workspace
	}
	takeOver := func(string) string { return "crabbox ssh --provider ssh --reclaim " + ident }
	err := p.withRemote(l, func(r *hostRemote) error {
		return p.owners().Claim(ctx, r, l, req.Reclaim, takeOver)
	})
	if err != nil {
		if l.Adopted { // (a refusal already dropped it: removing is then a no-op)
			if rmErr := p.Claims.Remove(l.ID); rmErr != nil {
				p.warnf("removing the claim just made for %s: %v", l.Workspace, rmErr)
			}
		}
		return nil, err
	}
	check := req.Open
	if check == nil {
		check = req.Ready
	}
	if check != nil {
		if err := check(ctx, l); err != nil {
			if l.Adopted {
				p.rollbackAdoption(ctx, l)
			}
			return nil, err
		}
	}
	now := p.now()
	claim, err := p.Claims.Update(l.ID, func(c *claims.Claim, exists bool) error {
		if !exists {
			return fmt.Errorf("the claim of lease %s disappeared", l.ID)
		}
		if req.RepoRoot != "" {
			if err := claims.Bind(c, exists, req.RepoRoot, req.Reclaim, now); err != nil {
				return err
			}
		}
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		c.Labels["state"] = StateReady
		c.Labels["last_touched_at"] = unixLabel(now)
		return nil
	})
	if err != nil {
		return nil, err
	}
	adopted := l.Adopted
	l = p.buildLease(p.hostForClaim(*claim), claim)
	l.Adopted = adopted
	return l, nil
}

// adopt claims a free configured host with a new lease, under the
// allocation lock (a claim made meanwhile by another process wins).
func (p *Provider) adopt(l *Lease, req ResolveRequest) (*Lease, error) {
	h := p.hostForLease(l)
	if h == nil {
		return nil, exitcode.Errorf(exitcode.NotFound, "ssh host %s is not configured", l.Workspace)
	}
	id := lease.NewLeaseID()
	now := p.now()
	err := p.Claims.AllocateTx(func(tx *claims.Tx) error {
		all, _, err := p.Claims.List()
		if err != nil {
			return err
		}
		var cs []claims.Claim
		for _, c := range all {
			if c.Provider == ProviderName {
				cs = append(cs, c)
			}
		}
		if c := claimForHost(*h, cs); c != nil {
			return exitcode.Refusef("ssh host %s was just claimed here by %s; use that lease", h.Name, describeClaim(*c))
		}
		slug, err := claims.AllocateSlug(all, "", id)
		if err != nil {
			return err
		}
		_, err = p.Claims.Update(id, func(c *claims.Claim, exists bool) error {
			if err := claims.Bind(c, exists, req.RepoRoot, req.Reclaim, now); err != nil {
				return err
			}
			p.recordClaim(c, id, slug, *h, false, now)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	claim, err := p.Claims.Get(id)
	if err != nil || claim == nil {
		return nil, fmt.Errorf("claim %s was not written: %v", id, err)
	}
	nl := p.buildLease(h, claim)
	nl.Adopted = true
	return nl, nil
}

// rollbackAdoption drops the owner record and claim an adoption made.
func (p *Provider) rollbackAdoption(ctx context.Context, l *Lease) {
	if _, err := p.dropRemote(context.WithoutCancel(ctx), l, false); err != nil {
		p.warnf("could not drop the owner record on host %s (%v)", l.Workspace, execx.FirstLine(err.Error()))
	}
	if err := p.Claims.Remove(l.ID); err != nil {
		p.warnf("removing the claim just made for %s: %v", l.Workspace, err)
	}
}

// hostForLease is the configured host of l (by user@host:port).
func (p *Provider) hostForLease(l *Lease) *Host {
	for i := range p.Settings.Hosts {
		if strings.EqualFold(p.Settings.Hosts[i].Endpoint(), l.WorkspaceID) {
			return &p.Settings.Hosts[i]
		}
	}
	return nil
}
