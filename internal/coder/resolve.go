package coder

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
)

// Resolve finds the workspace for req.Ident (docs/providers/coder.md,
// Resolving a lease): claims of this deployment first, then the inventory.
func (p *Provider) Resolve(ctx context.Context, req ResolveRequest) (*Lease, error) {
	ident := strings.TrimSpace(req.Ident)
	if ident == "" {
		return nil, exitcode.Errorf(exitcode.Usage, "coder resolve requires a lease id, slug, workspace, or owner/workspace")
	}
	if l, err := p.warm(ctx, ident, req); l != nil || err != nil {
		return l, err
	}
	spec := p.speculate(ctx, ident, req)
	defer spec.discard(p)
	var matched, cs []claims.Claim
	s, err := p.inventory(ctx, func(who WhoAmI) bool {
		matched, cs = nil, p.coderClaims(who) // read (and warned about) once
		for _, c := range cs {
			if p.claimMatchesIdent(c, ident) {
				matched = append(matched, c)
			}
		}
		if foreignOwner(ident, who) {
			return true
		}
		for _, c := range matched {
			if foreignOwner(p.claimRef(c), who) {
				return true
			}
		}
		return false
	})
	if err != nil {
		return nil, err
	}
	l, err := p.pick(ident, matched, cs, s, req.Mode)
	if err != nil {
		return nil, err
	}
	if req.Mode != Prepare {
		return l, nil
	}
	if spec.confirms(l) {
		req.Ready = nil // the tunnel opened during the listing already answered
		spec.keep()
	} else {
		spec.discard(p)
	}
	return p.prepare(ctx, l, s, req)
}

// speculation is an SSH readiness wait started before the inventory listing
// returns, for a lease whose claim already names its canonical ref and
// workspace ID: the tunnel a warm run needs then opens while `coder list`
// runs instead of after it. It is kept only when the listing confirms the
// same workspace (by ID) with a ready agent; otherwise it is cancelled and
// the ordinary path runs. `coder ssh` may start a stopped workspace, so this
// is only done in Prepare mode, which starts it anyway, and never when the
// claim belongs to another repository (refused before any mutation).
//
// The tunnel is opened by name, so it reaches whatever workspace has that
// name now; its master is keyed by the claim's workspace ID. Unless the
// listing confirms that ID, the master is ended (discard): kept persistent,
// it would let the next run's fast path take a workspace recreated under
// the same name for the claim's.
type speculation struct {
	workspaceID string
	lease       *Lease
	cancel      context.CancelFunc
	done        chan error
	err         error
	finished    bool
	settled     bool // kept or discarded
}

func (p *Provider) speculate(ctx context.Context, ident string, req ResolveRequest) *speculation {
	if req.Mode != Prepare || req.Ready == nil {
		return nil
	}
	hit := p.readyClaim(ident, req)
	if hit == nil {
		return nil
	}
	l, err := p.buildLease(nil, hit)
	if err != nil {
		return nil
	}
	sctx, cancel := context.WithCancel(ctx)
	sp := &speculation{workspaceID: hit.WorkspaceID, lease: l, cancel: cancel, done: make(chan error, 1)}
	open := req.Open
	if open == nil {
		open = req.Ready
	}
	go func() { sp.done <- open(sctx, l) }()
	return sp
}

// confirms waits for the speculative wait when l is the same, ready
// workspace, and reports whether it succeeded.
func (sp *speculation) confirms(l *Lease) bool {
	if sp == nil || !l.Ready || l.WorkspaceID != sp.workspaceID {
		return false
	}
	sp.wait()
	return sp.err == nil
}

// abandon cancels the speculative wait and waits for it to stop.
func (sp *speculation) abandon() {
	if sp == nil {
		return
	}
	sp.cancel()
	sp.wait()
}

// keep marks the speculative tunnel as the lease's: discard leaves it.
func (sp *speculation) keep() {
	if sp != nil {
		sp.settled = true
	}
}

// discard abandons the speculative wait and, unless it was kept, ends the
// persistent master it may have left up (once).
func (sp *speculation) discard(p *Provider) {
	if sp == nil {
		return
	}
	sp.abandon()
	if sp.settled {
		return
	}
	sp.settled = true
	p.closeMaster(sp.lease)
}

func (sp *speculation) wait() {
	if !sp.finished {
		sp.err = <-sp.done
		sp.finished = true
	}
}

// pick selects the workspace.
func (p *Provider) pick(ident string, matched, cs []claims.Claim, s *session, mode Mode) (*Lease, error) {
	// a/b. A claim addressed by lease ID, slug or ref: prefer an exact
	// lease-ID hit, then a unique claim.
	chosen, err := claims.Pick(matched, ident)
	if err != nil {
		return nil, err
	}
	if chosen != nil {
		ref := p.claimRef(*chosen)
		row, err := rowForClaim(*chosen, ref, s.rows)
		if err != nil {
			return nil, err
		}
		if row == nil {
			if mode == ReleaseOnly {
				// The workspace the claim is bound to is gone. When the
				// identifier names a live workspace (recreated under the
				// same name), return that one with the claim attached so
				// Release refuses it (no exact claim) instead of reporting the named
				// workspace released. By lease ID or slug, the lease is
				// simply missing and its claim can go.
				if chosen.WorkspaceID != "" {
					if w := exactRow(ident, s.rows); w != nil {
						return p.buildLease(w, chosen)
					}
				}
				return p.buildLease(nil, chosen)
			}
			if w := exactRow(ref, s.rows); w != nil && chosen.WorkspaceID != "" {
				// Deleted and recreated under the same name: never use the
				// new workspace for the old lease.
				return nil, exitcode.Errorf(exitcode.NotFound, "coder workspace %s of lease %s was deleted: the workspace now named %s is another one (ID %s, the lease's was %s), so crabbox will not use it; "+
					"drop the old claim (the new workspace is left alone) and lease again; %s", ref, chosen.LeaseID, ref, w.ID, chosen.WorkspaceID, exitcode.Next("crabbox stop "+chosen.LeaseID))
			}
			return nil, exitcode.Errorf(exitcode.NotFound, "coder workspace %s of lease %s was not found in coder list; if it is gone, its claim can go; %s", ref, chosen.LeaseID, exitcode.Next("crabbox stop "+chosen.LeaseID))
		}
		return p.buildLease(row, chosen)
	}
	// b'. A released record addressed by its lease ID or slug.
	norm := lease.NormalizeSlug(ident)
	for _, r := range s.released {
		if r.LeaseID != ident && (norm == "" || lease.NormalizeSlug(r.Slug) != norm) {
			continue
		}
		if w := rowByID(s.rows, r.WorkspaceID); w != nil && releasedForRow(*w, s.released) != nil && p.claimForRow(*w, cs, s.rows) == nil {
			return p.leaseForRow(w, nil, s)
		}
	}
	// c. Exact inventory match on name or owner/name.
	hits := exactRows(ident, s.rows)
	if len(hits) > 1 {
		return nil, exitcode.Errorf(exitcode.NotFound, "coder workspace %q is ambiguous: %d workspaces match; use owner/name", ident, len(hits))
	}
	if len(hits) == 1 {
		return p.leaseForRow(hits[0], p.claimForRow(*hits[0], cs, s.rows), s)
	}
	// d. Owned rows by lease ID or slug.
	hits = nil
	for i := range s.rows {
		owned, id, slug := Owned(s.rows[i], p.Settings.Prefix)
		if owned && (id == ident || (norm != "" && slug == norm)) {
			hits = append(hits, &s.rows[i])
		}
	}
	switch len(hits) {
	case 0:
		return nil, exitcode.Errorf(exitcode.NotFound, "coder workspace %q not found; `crabbox list` shows crabbox's leases, `crabbox list --all` every workspace", ident)
	case 1:
		return p.leaseForRow(hits[0], nil, s)
	}
	return nil, exitcode.Errorf(exitcode.NotFound, "coder workspace %q is ambiguous: %d workspaces match", ident, len(hits))
}

// exactRows are the rows named by ident (name or owner/name, any case).
func exactRows(ident string, rows []Workspace) []*Workspace {
	var hits []*Workspace
	for i := range rows {
		r := &rows[i]
		if strings.EqualFold(r.Name, ident) || strings.EqualFold(r.Ref(), ident) {
			hits = append(hits, r)
		}
	}
	return hits
}

// exactRow is the one row named by ident, or nil (none or ambiguous).
func exactRow(ident string, rows []Workspace) *Workspace {
	if hits := exactRows(ident, rows); len(hits) == 1 {
		return hits[0]
	}
	return nil
}

// prepare starts a stopped workspace, waits for SSH and claims it.
func (p *Provider) prepare(ctx context.Context, l *Lease, s *session, req ResolveRequest) (*Lease, error) {
	// Refuse a claim that does not match the listing, or a repo conflict,
	// before any mutation.
	if err := verifyClaim(l, rowOf(l), "use"); err != nil {
		return nil, err
	}
	if l.Claim != nil && l.Claim.RepoRoot != "" && req.RepoRoot != "" && !req.Reclaim && !sameDir(l.Claim.RepoRoot, req.RepoRoot) {
		return nil, exitcode.Refusef("lease %s is claimed by repo %s; use --reclaim to claim it for %s", l.ID, l.Claim.RepoRoot, req.RepoRoot)
	}
	if !l.Ready {
		p.closeMaster(l) // a stopped workspace's connection is dead
		row, err := p.ensureStarted(ctx, l, s)
		if err != nil {
			return nil, err
		}
		claim := l.Claim
		id, slug := l.ID, l.Slug
		nl, err := p.buildLease(row, claim)
		if err != nil {
			return nil, err
		}
		nl.ID, nl.Slug, nl.Labels["lease"] = id, slug, id
		l = nl
	}
	if req.Ready != nil {
		if err := req.Ready(ctx, l); err != nil {
			return nil, err
		}
	}
	return p.bindReady(l, req, s.who.URL)
}

// bindReady marks l ready and, for a run from a repo, claims it for that
// repo (adopting an unclaimed workspace) and touches the claim.
func (p *Provider) bindReady(l *Lease, req ResolveRequest, coderURL string) (*Lease, error) {
	l.Ready, l.State, l.Labels["state"] = true, StateReady, StateReady
	if req.RepoRoot == "" {
		return l, nil
	}
	now := p.now()
	claim, err := p.Claims.Update(l.ID, func(c *claims.Claim, exists bool) error {
		if err := claims.Bind(c, exists, req.RepoRoot, req.Reclaim, now); err != nil {
			return err
		}
		if !exists { // adopting: the current config's release action applies
			l.Adopted = true
			c.Labels = p.leaseLabels(l.ID, l.Slug, l.Workspace, l.Ref, l.Keep, now)
			c.IdleTimeoutSeconds = int64(p.Settings.IdleTimeout.Seconds())
		}
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		c.Slug, c.Provider, c.CoderURL = l.Slug, ProviderName, coderURL
		c.CloudID, c.WorkspaceID, c.TargetOS = l.Ref, l.WorkspaceID, "linux"
		c.Labels["coder_workspace"], c.Labels["coder_workspace_ref"] = l.Workspace, l.Ref
		c.Labels["state"] = StateReady
		c.Labels["last_touched_at"] = unixLabel(now)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if claim != nil {
		cc := *claim
		l.Claim = &cc
		l.LastTouchedAt = now
	}
	if l.Released != nil {
		// The released workspace is a claimed lease again.
		if err := p.Claims.DropReleasedWorkspace(l.WorkspaceID); err != nil {
			p.warnf("removing released record %s: %v", l.Released.LeaseID, err)
		}
		l.Released = nil
	}
	return l, nil
}

// sameDir compares repo roots the way claims.Bind does.
func sameDir(a, b string) bool {
	return filepath.Clean(a) == filepath.Clean(b)
}

// requireExactClaim guards a lease about to be stopped or deleted:
// a claim (or crabbox's released record) must exist, and the claim's
// workspace ID, name and owner must match the listing.
func requireExactClaim(l *Lease) error {
	if l.Claim == nil {
		if l.Released != nil {
			return nil
		}
		return exitcode.Refusef(
			"refusing to release coder workspace %s: it has no crabbox claim on this machine, so crabbox did not create or adopt it; nothing was changed. "+
				"Manage it with `coder stop %s`, or adopt it (claim it for this repo); %s", l.Ref, l.Ref, exitcode.Next("crabbox ssh "+l.Ref))
	}
	return verifyClaim(l, rowOf(l), "release")
}

// Waiting for a build Coder is already running: a build in progress is
// waited for, never reported as a failure.
var (
	buildPollInterval = time.Second
	buildWaitTimeout  = 10 * time.Minute
)

// build phases of a workspace, from its latest build.
const (
	phaseRunning = "running" // started: the agent may still be coming up
	phaseStopped = "stopped" // may be started
	phaseBusy    = "busy"    // a build is queued or running: wait for it
	phaseDead    = "dead"    // cannot be started (failed, deleted, ...)
)

// buildPhase classifies a row by its latest build's status (Coder's
// pending, starting, running, stopping, stopped, failed, canceling,
// canceled, deleting, deleted), falling back to the transition when the
// status is missing.
func buildPhase(w Workspace) string {
	switch strings.ToLower(strings.TrimSpace(w.Status)) {
	case "running", "started":
		return phaseRunning
	case "stopped":
		return phaseStopped
	case "pending", "starting", "stopping", "canceling":
		return phaseBusy
	case "":
		if w.Ready() {
			return phaseRunning
		}
		switch strings.ToLower(strings.TrimSpace(w.Transition)) {
		case "start":
			return phaseRunning
		case "stop":
			return phaseStopped
		}
	}
	return phaseDead
}

// ensureStarted makes l's workspace started and returns its fresh row.
//
// Exactly one `coder start` is issued, and only for a stopped workspace: a
// build already queued or running (a start or stop issued outside crabbox,
// Coder's autostart/autostop) is waited for by polling `coder list`
// (bounded by buildWaitTimeout), and a workspace that is stopping is
// started once it has stopped. Should Coder still answer "A workspace
// build is already active" (a build begun after the listing), that build
// is waited for in the same way. crabbox's ssh never starts a workspace
// (see ProxyCommand), so nothing else here competes with the one start.
func (p *Provider) ensureStarted(ctx context.Context, l *Lease, s *session) (*Workspace, error) {
	wctx, cancel := context.WithTimeout(ctx, buildWaitTimeout)
	defer cancel()
	row := rowByID(s.rows, l.WorkspaceID)
	waitingFor := "" // the busy status last announced
	started := false
	for {
		if row == nil {
			return nil, exitcode.Errorf(exitcode.NotFound, "coder workspace %s disappeared while crabbox was starting it", l.Ref)
		}
		switch buildPhase(*row) {
		case phaseRunning:
			if waitingFor != "" {
				p.emit(Event{Kind: EventDone, Lease: l})
			}
			return row, nil
		case phaseDead:
			if waitingFor != "" {
				p.emit(Event{Kind: EventDone, Lease: l, Err: fmt.Errorf("%s", row.State())})
			}
			return nil, exitcode.Errorf(exitcode.NotFound, "coder workspace %s is %s and cannot be started; check it with `coder list`", l.Ref, row.State())
		case phaseStopped:
			if started {
				return nil, exitcode.Errorf(exitcode.NotFound, "coder workspace %s is stopped again after crabbox started it (stopped outside crabbox?); retry, or check it with `coder list`", l.Ref)
			}
			if waitingFor != "" {
				p.emit(Event{Kind: EventDone, Lease: l})
				waitingFor = ""
			}
			p.emit(Event{Kind: EventStarting, Lease: l})
			err := p.Client.Start(ctx, l.Ref)
			switch {
			case err == nil:
				started = true
				p.emit(Event{Kind: EventDone, Lease: l})
				if err := p.relist(ctx, s); err != nil {
					return nil, err
				}
				row = rowByID(s.rows, l.WorkspaceID)
				continue
			case IsBuildActive(err):
				// A build began after the listing: no build of ours
				// exists; wait for that one, then look again.
				p.emit(Event{Kind: EventDone, Lease: l, Err: err})
			default:
				p.emit(Event{Kind: EventDone, Lease: l, Err: err})
				return nil, err
			}
		case phaseBusy:
			if st := strings.ToLower(row.Status); st != waitingFor {
				if waitingFor != "" {
					p.emit(Event{Kind: EventDone, Lease: l})
				}
				waitingFor = st
				p.emit(Event{Kind: EventWaiting, Lease: l, Message: fmt.Sprintf("coder workspace %s has a build in progress (%s); waiting for it", l.Ref, st)})
			}
		}
		timedOut := func() error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p.emit(Event{Kind: EventDone, Lease: l, Err: wctx.Err()})
			return exitcode.Errorf(exitcode.NotFound, "timed out after %s waiting for the build of coder workspace %s to finish (state=%s); check it with `coder list`, then retry", buildWaitTimeout, l.Ref, row.Status)
		}
		timer := time.NewTimer(buildPollInterval)
		select {
		case <-wctx.Done():
			timer.Stop()
			return nil, timedOut()
		case <-timer.C:
		}
		if err := p.relist(wctx, s); err != nil {
			if wctx.Err() != nil {
				return nil, timedOut()
			}
			return nil, err
		}
		row = rowByID(s.rows, l.WorkspaceID)
	}
}

// rowByID is the row with workspace ID id, or nil.
func rowByID(rows []Workspace, id string) *Workspace {
	for i := range rows {
		if rows[i].ID == id {
			return &rows[i]
		}
	}
	return nil
}
