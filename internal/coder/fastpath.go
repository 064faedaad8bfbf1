package coder

import (
	"context"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
)

// warmCheckTimeout bounds the one ready check the fast path runs through a
// persistent master.
const warmCheckTimeout = 10 * time.Second

// readyClaim is the one claim of this provider addressed by ident that
// records a ready workspace with its canonical ref and workspace ID, for
// a Prepare from the repo it is bound to (or with --reclaim); nil when
// there is none or the match is ambiguous.
func (p *Provider) readyClaim(ident string, req ResolveRequest) *claims.Claim {
	if req.Mode != Prepare || req.Confirm {
		return nil
	}
	list, _, err := p.Claims.List()
	if err != nil {
		return nil
	}
	var hit *claims.Claim
	for i := range list {
		c := &list[i]
		if c.Provider != ProviderName || !p.claimMatchesIdent(*c, ident) {
			continue
		}
		if hit != nil { // ambiguous: let the ordinary path explain
			return nil
		}
		hit = c
	}
	if hit == nil || hit.WorkspaceID == "" || !strings.Contains(hit.CloudID, "/") || !strings.EqualFold(hit.Labels["state"], StateReady) {
		return nil
	}
	if hit.RepoRoot != "" && req.RepoRoot != "" && !req.Reclaim && !sameDir(hit.RepoRoot, req.RepoRoot) {
		return nil
	}
	return hit
}

// warm is Resolve's fast path (docs/configuration.md, Persistent
// connection): for a claim that says its workspace is ready, a live
// persistent control master for that workspace ID is proof enough that the
// workspace runs, so the lease is built from the claim and no `coder`
// program runs at all. It applies only when the cached `coder whoami`
// names the claim's deployment and owner (otherwise the ordinary path
// decides), and the master must listen on its socket and pass one ready
// check through it (left to the caller's first round trip with
// req.DeferReady: the lease is then ReadyUnchecked). Anything else
// returns nil and the ordinary path runs: a
// dead master's socket is removed, a master that does not pass the ready
// check is ended first. With --reclaim the ordinary path runs and the
// master is left up (another run on this machine may be using it).
func (p *Provider) warm(ctx context.Context, ident string, req ResolveRequest) (*Lease, error) {
	if p.Tunnels == nil || !p.Tunnels.Persistent() {
		return nil, nil
	}
	hit := p.readyClaim(ident, req)
	if hit == nil {
		return nil, nil
	}
	l, err := p.buildLease(nil, hit)
	if err != nil || l.Target.ControlKey == "" {
		return nil, nil
	}
	if req.Reclaim {
		// A takeover goes through Coder. The master is not ended: it is
		// only a connection, and another run on this machine may be using
		// it right now (ending it broke concurrent --reclaim runs).
		return nil, nil
	}
	if p.Client == nil || p.Client.Cache == nil {
		return nil, nil
	}
	who, ok := p.Client.Cache.Load()
	if !ok || (hit.CoderURL != "" && !sameURL(hit.CoderURL, who.URL)) || foreignOwner(l.Ref, who) {
		return nil, nil
	}
	s, err := p.Tunnels.Get(l.Target)
	if err != nil || !s.Attach(ctx) {
		return nil, nil
	}
	if !req.DeferReady {
		cctx, cancel := context.WithTimeout(ctx, warmCheckTimeout)
		code, err := s.Run(cctx, l.Target.ReadyCheck, nil, nil, nil)
		cancel()
		if err != nil || code != 0 {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			_ = s.Shutdown()
			return nil, nil
		}
	}
	l, err = p.bindReady(l, req, hit.CoderURL)
	if l != nil {
		l.Unconfirmed, l.ReadyUnchecked = true, req.DeferReady
	}
	return l, err
}

// closeMaster ends l's persistent control master, if this process may
// keep one (before a stop, delete or cleanup, for a workspace found
// stopped, and when it stopped answering).
func (p *Provider) closeMaster(l *Lease) {
	if p.Tunnels == nil || !p.Tunnels.Persistent() || l == nil || l.Ref == "" || l.WorkspaceID == "" {
		return
	}
	t := l.Target
	if t.ControlKey == "" {
		t = p.sshTarget(l.Ref, l.WorkspaceID)
	}
	if err := p.Tunnels.Shutdown(t); err != nil {
		p.warnf("ending the ssh connection to %s: %v", l.Ref, err)
	}
}
