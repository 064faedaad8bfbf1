package coder

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// StateReleased is the state list shows for a workspace crabbox released
// by stopping it (it has a released record and no claim).
const StateReleased = "released"

// CreateKey identifies the settings a workspace is created with: template,
// preset, parameters (order-insensitive), parameter defaults and the rich
// parameter file's content. A released workspace is reused only by a run
// whose key is the same.
func (s Settings) CreateKey() string {
	params := append([]string(nil), s.Parameters...)
	sort.Strings(params)
	h := sha256.New()
	fmt.Fprintf(h, "template=%s\x00preset=%s\x00defaults=%t\x00", strings.ToLower(strings.TrimSpace(s.Template)), strings.TrimSpace(s.Preset), s.UseParameterDefaults)
	for _, p := range params {
		fmt.Fprintf(h, "param=%s\x00", p)
	}
	if s.RichParameterFile != "" {
		data, err := os.ReadFile(s.RichParameterFile)
		if err != nil {
			fmt.Fprintf(h, "richfile-unreadable=%s\x00", s.RichParameterFile)
		} else {
			sum := sha256.Sum256(data)
			fmt.Fprintf(h, "richfile=%x\x00", sum)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// releasedRecords are this deployment's Coder released records (newest
// first); unreadable records are none.
func (p *Provider) releasedRecords(who WhoAmI) []claims.Released {
	recs, err := p.Claims.ListReleased()
	if err != nil {
		p.warnf("reading released records: %v", err)
		return nil
	}
	var out []claims.Released
	for _, r := range recs {
		if r.Provider != "" && r.Provider != ProviderName {
			continue
		}
		if r.CoderURL != "" && who.URL != "" && !sameURL(r.CoderURL, who.URL) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// releasedForRow is the released record of row w: same workspace ID, name
// and owner. A record whose ID matches but whose name or owner does not is
// not the row's (and is never acted on).
func releasedForRow(w Workspace, recs []claims.Released) *claims.Released {
	for i := range recs {
		if recs[i].WorkspaceID == w.ID && releasedMismatch(recs[i], w) == "" {
			return &recs[i]
		}
	}
	return nil
}

// releasedMismatch says which field of a released record differs from the
// row with its workspace ID ("" when all match).
func releasedMismatch(r claims.Released, w Workspace) string {
	if r.WorkspaceID != w.ID {
		return fmt.Sprintf("workspace ID: record has %s, workspace %s has %s", r.WorkspaceID, w.Ref(), w.ID)
	}
	if !strings.EqualFold(r.Workspace, w.Name) {
		return fmt.Sprintf("workspace name: record has %s, workspace ID %s is named %s", r.Workspace, w.ID, w.Name)
	}
	if o := ownerOf(r.Ref); o != "" && w.Owner != "" && !strings.EqualFold(o, w.Owner) {
		return fmt.Sprintf("owner: record has %s, workspace ID %s belongs to %s", o, w.ID, w.Owner)
	}
	return ""
}

// releasedRecordFor builds the record kept when l is released by stopping.
func (p *Provider) releasedRecordFor(l *Lease, now time.Time) claims.Released {
	c := l.Claim
	r := claims.Released{
		LeaseID: l.ID, Slug: l.Slug, Provider: ProviderName,
		WorkspaceID: l.WorkspaceID, Workspace: l.Workspace, Ref: l.Ref,
		Template:   l.Template,
		ReleasedAt: now.UTC().Format(time.RFC3339),
	}
	if c != nil {
		r.CoderURL, r.RepoRoot = c.CoderURL, c.RepoRoot
		r.Preset = c.Labels["coder_preset"]
		r.CreateKey = c.Labels["coder_create_key"]
		if t := c.Labels["coder_template"]; t != "" && r.Template == "" {
			r.Template = t
		}
		if ps := c.Labels["coder_parameters"]; ps != "" {
			r.Parameters = strings.Split(ps, "\n")
		}
	} else if l.Released != nil {
		prev := *l.Released
		prev.ReleasedAt = r.ReleasedAt
		return prev
	}
	return r
}

// claimMismatch checks a claim against the Coder row it resolved to
// (item: claims are checked against what they name): the claim's workspace
// ID, workspace name (its ref and name labels) and owner must all match
// the listing. It returns which field differs ("" when all match).
func claimMismatch(c *claims.Claim, w Workspace) string {
	if c.WorkspaceID != "" && c.WorkspaceID != w.ID {
		return "workspace ID"
	}
	for _, ref := range []string{c.CloudID, c.Labels["coder_workspace_ref"], c.Labels["coder_workspace"]} {
		ref = strings.TrimSpace(ref)
		if ref == "" {
			continue
		}
		if !strings.EqualFold(bareName(ref), w.Name) {
			return fmt.Sprintf("workspace name: the claim names %s, but workspace ID %s is %s in Coder", bareName(ref), w.ID, w.Name)
		}
		if o := ownerOf(ref); o != "" && w.Owner != "" && !strings.EqualFold(o, w.Owner) {
			return fmt.Sprintf("owner: the claim names owner %s, but workspace ID %s belongs to %s in Coder", o, w.ID, w.Owner)
		}
	}
	return ""
}

// verifyClaim refuses (exit 2, nothing changed) a lease whose claim does
// not match the workspace it resolved to; what is a verb for the message.
func verifyClaim(l *Lease, w *Workspace, what string) error {
	if l.Claim == nil || w == nil {
		return nil
	}
	m := claimMismatch(l.Claim, *w)
	if m == "" {
		return nil
	}
	if m == "workspace ID" {
		return exitcode.Refusef(
			"refusing to %s coder workspace %s: claim %s is bound to workspace ID %s, but %s now has ID %s (recreated?); nothing was changed. "+
				"Manage the new workspace with `coder stop %s`; to drop the stale claim: %s",
			what, w.Ref(), l.Claim.LeaseID, l.Claim.WorkspaceID, w.Ref(), w.ID, w.Ref(), exitcode.Next("crabbox stop "+l.Claim.LeaseID))
	}
	return exitcode.Refusef(
		"refusing to %s coder workspace %s: claim %s does not match Coder's listing (%s); nothing was changed. "+
			"The claim file %s was edited or is stale: check it, or manage the workspace with `coder` directly",
		what, w.Ref(), l.Claim.LeaseID, m, l.Claim.LeaseID+".json")
}

// rowOf is the listing row a resolved lease was built from (nil for a
// missing workspace).
func rowOf(l *Lease) *Workspace {
	if l == nil || l.State == StateMissing || l.WorkspaceID == "" {
		return nil
	}
	return &Workspace{ID: l.WorkspaceID, Name: l.Workspace, Owner: l.Owner}
}
