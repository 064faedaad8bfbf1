package coder

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// releaseAction is the action a release of l uses: the one recorded in
// its claim (stop for a released record), unless the command line gave
// --coder-delete-on-release[=false] (Settings.ReleaseOverride). A config
// value never turns a recorded stop into a delete.
func (p *Provider) releaseAction(l *Lease) string {
	switch p.Settings.ReleaseOverride {
	case ActionDelete, ActionStop:
		return p.Settings.ReleaseOverride
	}
	if l.Claim != nil {
		return claimReleaseAction(l.Claim)
	}
	return ActionStop
}

// Release stops or deletes a resolved lease, per the action its claim
// recorded (see releaseAction), and removes its claim. It refuses (exit 2,
// nothing changed) a workspace without an exact claim or released
// record, a claim whose workspace ID, name or owner differs from Coder's
// listing, and a claim bound to another repository without req.Reclaim.
// A workspace Coder no longer knows counts as released. Released by
// stopping, the lease leaves a released record so the stopped workspace
// stays known (list, reuse, cleanup --released-older-than).
func (p *Provider) Release(ctx context.Context, l *Lease, req ReleaseRequest) (ReleaseResult, error) {
	res := ReleaseResult{Action: p.releaseAction(l)}
	if err := requireExactClaim(l); err != nil {
		return res, err
	}
	if l.Ref == "" {
		return res, exitcode.Errorf(exitcode.Usage, "coder release requires a workspace name")
	}
	if c := l.Claim; c != nil && req.RepoRoot != "" && c.RepoRoot != "" && !req.Reclaim && !sameDir(c.RepoRoot, req.RepoRoot) {
		return res, exitcode.Refusef(
			"refusing to release lease %s: it is claimed by repo %s, not %s; nothing was changed. To release it from here: %s",
			l.ID, c.RepoRoot, req.RepoRoot, exitcode.Next("crabbox stop --reclaim "+l.ID))
	}
	p.closeMaster(l) // no persistent connection outlives its lease
	switch {
	case l.State == StateMissing:
		res.Skipped = "workspace no longer exists"
	case res.Action == ActionStop && l.State == StateStopped:
		res.Skipped = "workspace already stopped"
	default:
		if err := p.releaseWorkspace(ctx, l, res.Action); err != nil {
			if !IsNotFound(err) {
				return res, err
			}
			res.Skipped = "workspace no longer exists"
		}
	}
	gone := l.State == StateMissing || res.Skipped == "workspace no longer exists"
	switch {
	case l.Claim == nil && res.Action == ActionStop && res.Skipped != "":
		// Already released and still stopped: the record stays as it is
		// (its release time is not refreshed).
		res.Released = !gone
	case res.Action == ActionStop && !gone && l.WorkspaceID != "":
		// Keep the record before the claim goes: a crash in between
		// leaves both, and the claim wins.
		if err := p.Claims.PutReleased(p.releasedRecordFor(l, p.now())); err != nil {
			p.warnf("keeping a released record for lease %s: %v (the stopped workspace %s is no longer known to crabbox)", l.ID, err, l.Ref)
		} else {
			res.Released = true
		}
	case l.WorkspaceID != "":
		if err := p.Claims.DropReleasedWorkspace(l.WorkspaceID); err != nil {
			p.warnf("removing released records of workspace %s: %v", l.Ref, err)
		}
	}
	if l.Claim == nil { // a released record only: nothing else to remove
		return res, nil
	}
	if err := p.Claims.Remove(l.ID); err != nil {
		return res, exitcode.New(exitcode.Failure, &ClaimKeptError{LeaseID: l.ID, Path: p.Claims.Path(l.ID), Result: res, Err: err})
	}
	return res, nil
}

// releaseWorkspace runs `coder stop` or `coder delete` for l, announced by
// EventReleasing and ended by EventDone. A build Coder is already running
// ("A workspace build is already active": an autostop, or a start or stop
// issued elsewhere) is waited for and the release issued again once it
// ended (bounded by buildWaitTimeout); a second stop after an autostop is
// harmless.
func (p *Provider) releaseWorkspace(ctx context.Context, l *Lease, action string) error {
	p.closeMaster(l)
	wctx, cancel := context.WithTimeout(ctx, buildWaitTimeout)
	defer cancel()
	for {
		p.emit(Event{Kind: EventReleasing, Lease: l, Action: action})
		var err error
		if action == ActionDelete {
			err = p.Client.Delete(ctx, l.Ref)
		} else {
			err = p.Client.Stop(ctx, l.Ref)
		}
		p.emit(Event{Kind: EventDone, Lease: l, Err: err})
		if !IsBuildActive(err) {
			return err
		}
		p.emit(Event{Kind: EventWaiting, Lease: l, Message: fmt.Sprintf("coder workspace %s has a build in progress; waiting for it before the %s", l.Ref, action)})
		timer := time.NewTimer(releaseRetryInterval)
		select {
		case <-wctx.Done():
			timer.Stop()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p.emit(Event{Kind: EventDone, Lease: l, Err: wctx.Err()})
			return exitcode.Errorf(exitcode.Transport, "timed out after %s waiting for the build of coder workspace %s to finish before the %s; check it with `coder list`, then %s",
				buildWaitTimeout, l.Ref, action, exitcode.Next("crabbox stop "+l.ID))
		case <-timer.C:
		}
		p.emit(Event{Kind: EventDone, Lease: l})
	}
}

// releaseRetryInterval is the pause between release attempts while Coder
// runs another build (tests shorten it).
var releaseRetryInterval = 2 * time.Second

// Cleanup stops or deletes workspaces whose local claim expired (idle + 12h)
// and is not kept, using the release action recorded in the claim
// (docs/providers/coder.md, Cleanup). With DeleteReleased it also deletes
// workspaces crabbox released (by stopping) at least ReleasedOlderThan ago;
// only a workspace with a released record whose workspace ID, name and owner
// match the listing is ever deleted. A released record whose workspace is
// gone or was recreated (ID differs) is dropped, never acted on. Unclaimed
// workspaces are never touched. With DryRun nothing is mutated.
func (p *Provider) Cleanup(ctx context.Context, req CleanupRequest) ([]CleanupDecision, error) {
	s, cs, err := p.claimedInventory(ctx)
	if err != nil {
		return nil, err
	}
	now := p.now()
	var out []CleanupDecision
	for _, w := range s.rows {
		owned, _, _ := Owned(w, p.Settings.Prefix)
		c := p.claimForRow(w, cs, s.rows)
		rec := releasedForRow(w, s.released)
		if !owned && c == nil && rec == nil {
			continue
		}
		l, _ := p.buildLease(&w, c)
		d := CleanupDecision{Workspace: w.Name, Ref: w.Ref(), LeaseID: l.ID, WorkspaceID: w.ID}
		switch {
		case c == nil && rec != nil:
			d.LeaseID, d.Released = rec.LeaseID, true
			age := now.Sub(rec.ReleasedTime())
			switch {
			case !req.DeleteReleased:
				d.Reason = "released " + age.Round(time.Second).String() + " ago (delete with --released-older-than)"
			case buildPhase(w) != phaseStopped:
				d.Reason = "released, but the workspace is " + w.State() + " (started outside crabbox?)"
			case age < req.ReleasedOlderThan:
				d.Reason = "released " + age.Round(time.Second).String() + " ago"
			default:
				d.Action, d.Reason = ActionDelete, "released "+age.Round(time.Second).String()+" ago"
			}
		case c == nil:
			d.LeaseID, d.Reason = "", "missing claim"
		case claimMismatch(c, w) != "":
			d.Reason = "claim does not match Coder's listing (" + claimMismatch(c, w) + ")"
		case l.Keep || strings.EqualFold(w.Labels["keep"], "true"):
			d.Reason = "keep=true"
		case !c.Expired(now):
			d.Reason = "claim active"
		default:
			d.Action, d.Reason = claimReleaseAction(c), "claim expired"
		}
		out = append(out, d)
	}
	// Released records whose workspace is gone or was recreated (no row
	// with its ID and name): only the record is dropped.
	for _, r := range s.released {
		w := rowByID(s.rows, r.WorkspaceID)
		if w != nil && releasedMismatch(r, *w) == "" {
			continue
		}
		reason := "released workspace gone or recreated"
		if w != nil {
			reason = "released record does not match Coder's listing (" + releasedMismatch(r, *w) + ")"
		}
		out = append(out, CleanupDecision{Workspace: r.Workspace, Ref: r.Ref, LeaseID: r.LeaseID, WorkspaceID: r.WorkspaceID,
			Released: true, Action: ActionForget, Reason: reason})
	}
	// Claims whose workspace never appeared (crash before create) or is
	// gone: once expired, only the claim is dropped; Coder is not called.
	for _, c := range p.orphanClaims(cs, s.rows) {
		ref := p.claimRef(c)
		d := CleanupDecision{Workspace: bareName(ref), Ref: ref, LeaseID: c.LeaseID, Reason: "workspace missing; claim active"}
		if c.Expired(now) {
			d.Action, d.Reason = ActionForget, "workspace missing"
		}
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	if req.DryRun {
		return out, nil
	}
	for i := range out {
		d := &out[i]
		if d.Action == "" {
			continue
		}
		if d.Released {
			if err := p.cleanupReleased(ctx, d); err != nil {
				return out, err
			}
			continue
		}
		var err error
		if d.Action == ActionDelete || d.Action == ActionStop {
			err = p.releaseWorkspace(ctx, &Lease{ID: d.LeaseID, Ref: d.Ref, Workspace: d.Workspace, WorkspaceID: d.WorkspaceID}, d.Action)
		}
		if err != nil && !IsNotFound(err) {
			return out, err
		}
		if d.Action == ActionStop && err == nil && d.WorkspaceID != "" {
			if c := findClaim(cs, d.LeaseID); c != nil {
				row := rowByID(s.rows, d.WorkspaceID)
				if row != nil {
					l, _ := p.buildLease(row, c)
					if perr := p.Claims.PutReleased(p.releasedRecordFor(l, p.now())); perr != nil {
						p.warnf("keeping a released record for lease %s: %v", d.LeaseID, perr)
					}
				}
			}
		} else if d.WorkspaceID != "" {
			if derr := p.Claims.DropReleasedWorkspace(d.WorkspaceID); derr != nil {
				p.warnf("removing released records of workspace %s: %v", d.Ref, derr)
			}
		}
		if err := p.Claims.Remove(d.LeaseID); err != nil {
			if d.Action == ActionForget {
				return out, err
			}
			return out, exitcode.New(exitcode.Failure, &ClaimKeptError{LeaseID: d.LeaseID, Path: p.Claims.Path(d.LeaseID), Result: ReleaseResult{Action: d.Action}, Err: err})
		}
		d.Done = true
	}
	return out, nil
}

// cleanupReleased deletes a released workspace (or drops a stale record).
// The record is taken under the store's allocation lock first, so a
// one-shot run cannot pick the workspace for reuse while it is deleted;
// if the delete fails the record is put back.
func (p *Provider) cleanupReleased(ctx context.Context, d *CleanupDecision) error {
	var taken *claims.Released
	err := p.Claims.AllocateTx(func(tx *claims.Tx) error {
		recs, err := tx.Released()
		if err != nil {
			return err
		}
		for i := range recs {
			if recs[i].LeaseID == d.LeaseID && recs[i].WorkspaceID == d.WorkspaceID {
				taken = &recs[i]
			}
		}
		if taken == nil {
			return nil // reused or removed meanwhile
		}
		return tx.RemoveReleased(d.LeaseID)
	})
	if err != nil || taken == nil {
		return err
	}
	if d.Action == ActionForget {
		d.Done = true
		return nil
	}
	err = p.releaseWorkspace(ctx, &Lease{ID: d.LeaseID, Ref: d.Ref, Workspace: d.Workspace, WorkspaceID: d.WorkspaceID}, ActionDelete)
	if err != nil && !IsNotFound(err) {
		if perr := p.Claims.PutReleased(*taken); perr != nil {
			p.warnf("restoring released record %s: %v", d.LeaseID, perr)
		}
		return err
	}
	d.Done = true
	return nil
}

func findClaim(cs []claims.Claim, leaseID string) *claims.Claim {
	for i := range cs {
		if cs[i].LeaseID == leaseID {
			return &cs[i]
		}
	}
	return nil
}

// claimReleaseAction is the release action a claim recorded:
// delete only when its own coder_release_action says so. Neither the
// current config nor a workspace label can turn a stop lease into a
// delete.
func claimReleaseAction(c *claims.Claim) string {
	switch strings.ToLower(strings.TrimSpace(c.Labels["coder_release_action"])) {
	case "delete", "true":
		return ActionDelete
	}
	return ActionStop
}

// List returns crabbox's leases: rows that are owned or claimed; with all,
// every row of the listing scope.
func (p *Provider) List(ctx context.Context, all bool) ([]*Lease, error) {
	s, cs, err := p.claimedInventory(ctx)
	if err != nil {
		return nil, err
	}
	var out []*Lease
	for i := range s.rows {
		w := s.rows[i]
		c := p.claimForRow(w, cs, s.rows)
		owned, _, _ := Owned(w, p.Settings.Prefix)
		l, err := p.leaseForRow(&w, c, s)
		if err != nil {
			return nil, err
		}
		if !owned && c == nil && l.Released == nil && !all {
			continue
		}
		if l.Released != nil {
			l.State, l.Labels["state"] = StateReleased, StateReleased
		}
		out = append(out, l)
	}
	for _, c := range p.orphanClaims(cs, s.rows) {
		l, err := p.buildLease(nil, &c)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

// claimedInventory lists the workspaces (with --all only when a claim names
// another owner) and this deployment's Coder claims.
func (p *Provider) claimedInventory(ctx context.Context) (*session, []claims.Claim, error) {
	var cs []claims.Claim
	s, err := p.inventory(ctx, func(who WhoAmI) bool {
		cs = p.coderClaims(who)
		for _, c := range cs {
			if foreignOwner(p.claimRef(c), who) {
				return true
			}
		}
		return false
	})
	return s, cs, err
}

// orphanClaims are claims whose workspace is certainly not listed: no row
// has its workspace ID or its name (a reused or ambiguous name is not
// certain, so such claims are left alone).
func (p *Provider) orphanClaims(cs []claims.Claim, rows []Workspace) []claims.Claim {
	var out []claims.Claim
	for _, c := range cs {
		name := bareName(p.claimRef(c))
		seen := false
		for _, w := range rows {
			if (c.WorkspaceID != "" && w.ID == c.WorkspaceID) || strings.EqualFold(w.Name, name) {
				seen = true
				break
			}
		}
		if !seen {
			out = append(out, c)
		}
	}
	return out
}
