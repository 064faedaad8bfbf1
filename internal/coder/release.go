package coder

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// ReleaseResult says what Release did.
type ReleaseResult struct {
	Action  string // stop | delete
	Skipped string // non-empty when no Coder call was needed (why)
}

// Release stops (or, with deleteOnRelease, deletes) a resolved lease and
// removes its claim. It refuses a workspace without an exact claim (D4).
// A workspace Coder no longer knows counts as released.
func (p *Provider) Release(ctx context.Context, l *Lease) (ReleaseResult, error) {
	res := ReleaseResult{Action: p.Settings.ReleaseAction()}
	if err := requireExactClaim(l); err != nil {
		return res, err
	}
	if l.Ref == "" {
		return res, exitcode.Errorf(exitcode.Usage, "coder release requires a workspace name")
	}
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
	if err := p.Claims.Remove(l.ID); err != nil {
		return res, exitcode.New(exitcode.Failure, &ClaimKeptError{LeaseID: l.ID, Path: p.Claims.Path(l.ID), Result: res, Err: err})
	}
	return res, nil
}

// ClaimKeptError says a release did its Coder part (the workspace is
// stopped, deleted or already gone: Result) but the local claim could not
// be removed (e.g. a read-only state dir). Nothing is left to do in Coder;
// only the claim file at Path remains.
type ClaimKeptError struct {
	LeaseID string
	Path    string
	Result  ReleaseResult
	Err     error
}

func (e *ClaimKeptError) Error() string {
	return fmt.Sprintf("removing claim %s (%s): %v", e.LeaseID, e.Path, e.Err)
}

func (e *ClaimKeptError) Unwrap() error { return e.Err }

// releaseWorkspace runs `coder stop` or `coder delete` for l, announced by
// EventReleasing and ended by EventDone.
func (p *Provider) releaseWorkspace(ctx context.Context, l *Lease, action string) error {
	p.emit(Event{Kind: EventReleasing, Lease: l, Action: action})
	var err error
	if action == ActionDelete {
		err = p.Client.Delete(ctx, l.Ref)
	} else {
		err = p.Client.Stop(ctx, l.Ref)
	}
	p.emit(Event{Kind: EventDone, Lease: l, Err: err})
	return err
}

// CleanupDecision is cleanup's verdict on one workspace.
type CleanupDecision struct {
	Workspace string
	Ref       string
	LeaseID   string
	Action    string // stop | delete | "" (skip)
	Reason    string
	Done      bool // the action ran (not dry-run)
}

// Cleanup stops or deletes workspaces whose local claim expired (idle +
// 12h) and is not kept, using the release action recorded in the claim
// (spec §9.11). Unclaimed workspaces are never touched. With dryRun
// nothing is mutated.
func (p *Provider) Cleanup(ctx context.Context, dryRun bool) ([]CleanupDecision, error) {
	s, cs, err := p.claimedInventory(ctx)
	if err != nil {
		return nil, err
	}
	now := p.now()
	var out []CleanupDecision
	for _, w := range s.rows {
		owned, _, _ := Owned(w, p.Settings.Prefix)
		c := p.claimForRow(w, cs, s.rows)
		if !owned && c == nil {
			continue
		}
		l, _ := p.buildLease(&w, c)
		d := CleanupDecision{Workspace: w.Name, Ref: w.Ref(), LeaseID: l.ID}
		switch {
		case c == nil:
			d.LeaseID, d.Reason = "", "missing claim"
		case l.Keep || strings.EqualFold(w.Labels["keep"], "true"):
			d.Reason = "keep=true"
		case !c.Expired(now):
			d.Reason = "claim active"
		default:
			d.Action, d.Reason = claimReleaseAction(c), "claim expired"
		}
		out = append(out, d)
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
	if dryRun {
		return out, nil
	}
	for i := range out {
		d := &out[i]
		if d.Action == "" {
			continue
		}
		var err error
		if d.Action == ActionDelete || d.Action == ActionStop {
			err = p.releaseWorkspace(ctx, &Lease{ID: d.LeaseID, Ref: d.Ref, Workspace: d.Workspace}, d.Action)
		}
		if err != nil && !IsNotFound(err) {
			return out, err
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

// claimReleaseAction is the release action a claim recorded (spec §9.11.6):
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
		if !owned && c == nil && !all {
			continue
		}
		l, err := p.buildLease(&w, c)
		if err != nil {
			return nil, err
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
// another owner, D6) and this deployment's Coder claims.
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
