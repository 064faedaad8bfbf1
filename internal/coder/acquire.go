package coder

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/provider"
)

// rollbackTimeout bounds the release that undoes a failed acquisition.
const rollbackTimeout = 2 * time.Minute

// Acquire creates a lease-unique workspace, records the claim before creating
// it, stores the canonical owner/name ref and workspace ID from the first
// listing (the claim is then bound to that exact workspace) and waits for SSH
// readiness. A failure after the claim is written is rolled back with the
// configured release action unless Keep is set; a failed create first checks
// whether the workspace exists.
func (p *Provider) Acquire(ctx context.Context, req AcquireRequest) (*Lease, error) {
	if strings.TrimSpace(p.Settings.Template) == "" {
		return nil, exitcode.Errorf(exitcode.Usage, "provider=coder requires --coder-template or coder.template to create a workspace")
	}
	if req.RepoRoot == "" {
		return nil, exitcode.Errorf(exitcode.Usage, "coder acquire needs a repository root to bind the claim to")
	}
	s, err := p.inventory(ctx, nil)
	if err != nil {
		return nil, err
	}
	now := p.now()
	id := lease.NewLeaseID()
	// Slug choice and the first claim write happen under the store's
	// allocation lock, so parallel acquisitions (e.g. warmups with the same
	// --slug) see each other's claims and never share a slug.
	var slug, name, ref string
	var reused *Workspace
	var reusedFrom claims.Released
	err = p.Claims.AllocateTx(func(tx *claims.Tx) error {
		cs := p.coderClaims(s.who)
		// A lease that will be deleted on release wants a throwaway
		// workspace: released ones are kept for runs that stop theirs.
		if req.Reuse && req.Slug == "" && p.Settings.ReleaseAction() == ActionStop {
			r, w, err := p.takeReleased(tx, s, cs, req)
			if err != nil {
				return err
			}
			if w != nil {
				reused, reusedFrom = w, *r
				return p.claimReused(tx, id, r, w, cs, s, req, now)
			}
		}
		inUse := func(sl string) bool {
			for _, w := range s.rows {
				if owned, _, ws := Owned(w, p.Settings.Prefix); owned && ws == sl {
					return true
				}
			}
			for _, c := range cs {
				if lease.NormalizeSlug(c.Slug) == sl {
					return true
				}
			}
			return false
		}
		base := req.Slug
		if base == "" {
			base = lease.GeneratedSlug(id)
		}
		var err error
		if slug, err = lease.AllocateSlug(base, id, inUse); err != nil {
			return err
		}
		if name, err = UniqueWorkspaceName(p.Settings.Prefix, slug, id); err != nil {
			return err
		}
		if err := ValidateNewName(name, s.rows); err != nil {
			return err
		}
		ref = name
		if s.who.Username != "" {
			ref = s.who.Username + "/" + name
		}
		// The claim comes first: a crash from here on leaves a claim naming
		// the workspace, so `crabbox stop` / `cleanup` can still find it.
		_, err = p.Claims.Update(id, func(c *claims.Claim, exists bool) error {
			if err := claims.Bind(c, exists, req.RepoRoot, req.Reclaim, now); err != nil {
				return err
			}
			c.Slug, c.Provider, c.CoderURL, c.CloudID = slug, ProviderName, s.who.URL, ref
			c.TargetOS = "linux"
			c.IdleTimeoutSeconds = int64(p.Settings.IdleTimeout / time.Second)
			c.Labels = p.leaseLabels(id, slug, name, ref, req.Keep, now)
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
	if reused != nil {
		return p.startReused(ctx, req, id, claim, reused, reusedFrom, s)
	}
	l, _ := p.buildLease(nil, claim)
	l.State, l.Labels["state"] = "provisioning", "provisioning"
	if l.Template == "" {
		l.Template = p.Settings.Template
	}
	p.emit(Event{Kind: EventProvisioning, Lease: l})

	opts := CreateOptions{
		Template:             p.Settings.Template,
		Preset:               p.Settings.Preset,
		NoWait:               strings.EqualFold(p.Settings.Wait, "no"),
		UseParameterDefaults: p.Settings.UseParameterDefaults,
		Parameters:           p.Settings.Parameters,
		RichParameterFile:    p.Settings.RichParameterFile,
	}
	if err := p.Client.Create(ctx, name, opts); err != nil {
		p.emit(Event{Kind: EventDone, Lease: l, Err: err})
		return nil, p.rollbackFailedCreate(ctx, req, id, ref, err)
	}
	p.emit(Event{Kind: EventDone, Lease: l})
	if err := p.relist(ctx, s); err != nil {
		return nil, p.rollback(req, id, ref, err)
	}
	var row *Workspace
	for i := range s.rows {
		if strings.EqualFold(s.rows[i].Name, name) {
			row = &s.rows[i]
		}
	}
	if row == nil {
		return nil, p.rollback(req, id, ref, exitcode.Errorf(exitcode.NotFound, "coder workspace %s was created but not found in coder list", name))
	}
	return p.claimReady(ctx, req, id, row, func(c *claims.Claim) {
		c.CloudID, c.WorkspaceID = row.Ref(), row.ID
		c.Labels["coder_workspace_ref"] = row.Ref()
	})
}

// claimReady is the common end of an acquisition: record row in the claim
// (plus record's own fields), wait for SSH, mark the claim ready; any
// failure rolls the acquisition back.
func (p *Provider) claimReady(ctx context.Context, req AcquireRequest, id string, row *Workspace, record func(*claims.Claim)) (*Lease, error) {
	claim, err := p.Claims.Update(id, func(c *claims.Claim, exists bool) error {
		if record != nil {
			record(c)
		}
		c.Labels["state"] = row.State()
		return nil
	})
	if err != nil {
		return nil, p.rollback(req, id, row.Ref(), err)
	}
	l, _ := p.buildLease(row, claim)
	if req.Ready != nil {
		if err := req.Ready(ctx, l); err != nil {
			return nil, p.rollback(req, id, row.Ref(), err)
		}
	}
	claim, err = p.Claims.Update(id, func(c *claims.Claim, exists bool) error {
		c.Labels["state"] = StateReady
		return nil
	})
	if err == nil {
		l, _ = p.buildLease(row, claim)
	}
	l.State, l.Ready, l.Labels["state"] = StateReady, true, StateReady
	return l, nil
}

// rollbackFailedCreate handles a failed `coder create`: the workspace may or
// may not exist. It lists first and acts only on a workspace that is there.
func (p *Provider) rollbackFailedCreate(ctx context.Context, req AcquireRequest, id, ref string, cause error) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	rows, err := p.Client.List(rctx, false)
	if err != nil {
		// We cannot tell whether a workspace exists: keep the claim so
		// `crabbox stop` can find it, and say so.
		return fmt.Errorf("%w; could not check whether workspace %s exists (%v); the claim is kept (`crabbox status %s` shows it); to release it: %s",
			cause, bareName(ref), err, id, exitcode.Next(p.manualStop(bareName(ref))))
	}
	for _, w := range rows {
		if strings.EqualFold(w.Name, bareName(ref)) {
			if req.Keep {
				p.recordRow(id, w)
				return fmt.Errorf("%w; workspace %s exists and is kept (--keep); to release it: %s", cause, w.Ref(), exitcode.Next(p.manualStop(id)))
			}
			// Bind the claim to the workspace first, so that if the release
			// fails the kept claim names it exactly (an exact claim is what
			// lets a later stop release it).
			p.recordRow(id, w)
			return p.release(rctx, id, w.Ref(), cause)
		}
	}
	if rmErr := p.Claims.Remove(id); rmErr != nil {
		p.warnf("removing claim %s: %v", id, rmErr)
	}
	return cause
}

// recordRow stores a row's canonical ref and ID in the claim.
func (p *Provider) recordRow(id string, w Workspace) {
	_, err := p.Claims.Update(id, func(c *claims.Claim, exists bool) error {
		if !exists {
			return claims.ErrNoChange
		}
		c.CloudID, c.WorkspaceID = w.Ref(), w.ID
		if c.Labels != nil {
			c.Labels["coder_workspace_ref"] = w.Ref()
		}
		return nil
	})
	if err != nil {
		p.warnf("updating claim %s: %v", id, err)
	}
}

// rollback undoes an acquisition that failed after create, unless Keep.
func (p *Provider) rollback(req AcquireRequest, id, ref string, cause error) error {
	if req.Keep {
		return fmt.Errorf("%w; workspace %s is kept (--keep); to release it: %s", cause, ref, exitcode.Next(p.manualStop(id)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), rollbackTimeout)
	defer cancel()
	return p.release(ctx, id, ref, cause)
}

// release stops or deletes ref per the configured action, then removes the
// claim; on failure it keeps the claim and names the manual command.
func (p *Provider) release(ctx context.Context, id, ref string, cause error) error {
	action := p.Settings.ReleaseAction()
	p.emit(Event{Kind: EventRollback, Message: fmt.Sprintf("rolling back: %s workspace %s", action, ref)})
	err := p.releaseWorkspace(ctx, &Lease{ID: id, Ref: ref, Workspace: bareName(ref)}, action)
	if err != nil && !IsNotFound(err) {
		code := exitcode.Code(cause)
		return exitcode.New(code, fmt.Errorf("%w; coder rollback %s failed for workspace %s: %v; to clean up by hand: %s",
			cause, action, bareName(ref), err, exitcode.Next(p.manualStop(bareName(ref)))))
	}
	if rmErr := p.Claims.Remove(id); rmErr != nil {
		p.warnf("removing claim %s: %v", id, rmErr)
	}
	return cause
}

// manualStop is the command that releases a lease by hand.
func (p *Provider) manualStop(ident string) string {
	return provider.StopCommand(p, ident)
}

// takeReleased picks the released workspace a new lease may start: the
// newest released record with the same create key, deployment, owner and
// repo whose workspace is listed with the same ID, name and owner, is
// stopped and has no claim. Records whose workspace is gone or was
// recreated (ID differs) are dropped. It runs under the allocation lock
// (tx), so no other process can take the same record.
func (p *Provider) takeReleased(tx *claims.Tx, s *session, cs []claims.Claim, req AcquireRequest) (*claims.Released, *Workspace, error) {
	recs, err := tx.Released()
	if err != nil {
		p.warnf("reading released records: %v", err)
		return nil, nil, nil
	}
	key := p.Settings.CreateKey()
	for i := range recs {
		r := &recs[i]
		if r.Provider != "" && r.Provider != ProviderName {
			continue
		}
		if r.CoderURL != "" && s.who.URL != "" && !sameURL(r.CoderURL, s.who.URL) {
			continue
		}
		w := rowByID(s.rows, r.WorkspaceID)
		if w == nil || releasedMismatch(*r, *w) != "" {
			// Deleted or recreated outside crabbox: forget it, never act on it.
			if err := tx.RemoveReleased(r.LeaseID); err != nil {
				p.warnf("removing released record %s: %v", r.LeaseID, err)
			}
			continue
		}
		if r.CreateKey == "" || r.CreateKey != key || !strings.EqualFold(w.Template, p.Settings.Template) {
			continue
		}
		if r.RepoRoot == "" || !sameDir(r.RepoRoot, req.RepoRoot) {
			continue
		}
		if s.who.Username != "" && !strings.EqualFold(w.Owner, s.who.Username) {
			continue
		}
		if p.claimForRow(*w, cs, s.rows) != nil || buildPhase(*w) != phaseStopped {
			continue
		}
		return r, w, nil
	}
	return nil, nil, nil
}

// claimReused writes the new lease's claim for a released workspace and
// removes the released record, under the allocation lock.
func (p *Provider) claimReused(tx *claims.Tx, id string, r *claims.Released, w *Workspace, cs []claims.Claim, s *session, req AcquireRequest, now time.Time) error {
	slug, err := claims.AllocateSlug(cs, r.Slug, id)
	if err != nil {
		return err
	}
	_, err = p.Claims.Update(id, func(c *claims.Claim, exists bool) error {
		if err := claims.Bind(c, exists, req.RepoRoot, req.Reclaim, now); err != nil {
			return err
		}
		c.Slug, c.Provider, c.CoderURL = slug, ProviderName, s.who.URL
		c.CloudID, c.WorkspaceID = w.Ref(), w.ID
		c.TargetOS = "linux"
		c.IdleTimeoutSeconds = int64(p.Settings.IdleTimeout / time.Second)
		c.Labels = p.leaseLabels(id, slug, w.Name, w.Ref(), req.Keep, now)
		c.Labels["state"] = w.State()
		c.Labels["reused_from_lease"] = r.LeaseID
		return nil
	})
	if err != nil {
		return err
	}
	return tx.RemoveReleased(r.LeaseID)
}

// startReused starts the released workspace the new lease took and waits
// for SSH, like a create would; a failure is rolled back (unless Keep)
// with the configured release action.
func (p *Provider) startReused(ctx context.Context, req AcquireRequest, id string, claim *claims.Claim, w *Workspace, from claims.Released, s *session) (*Lease, error) {
	l, _ := p.buildLease(w, claim)
	p.emit(Event{Kind: EventReusing, Lease: l, Message: fmt.Sprintf("reusing released coder workspace %s (lease=%s; released by lease %s at %s); --fresh-workspace creates a new one",
		w.Ref(), id, from.LeaseID, from.ReleasedAt)})
	row, err := p.ensureStarted(ctx, l, s)
	if err != nil {
		return nil, p.rollback(req, id, w.Ref(), err)
	}
	return p.claimReady(ctx, req, id, row, nil)
}
