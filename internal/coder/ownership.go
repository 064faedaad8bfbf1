package coder

import (
	"strings"

	"github.com/crabbox-dev/crabbox/internal/lease"
)

// Owned decides whether an inventory row belongs to Crabbox and returns its
// lease ID and slug:
//
//  1. legacy crabbox_lease_id / crabbox_slug labels → owned; lease from
//     crabbox_lease_id, else lease, else synthetic; slug from crabbox_slug,
//     else slug;
//  2. generic lease / slug labels, only with a Crabbox marker
//     (crabbox=true or created_by=crabbox) → owned;
//  3. the marker alone → owned, synthetic lease ID, no slug;
//  4. the name starts with the workspace prefix → owned, slug = the rest of
//     the name, synthetic lease ID;
//  5. otherwise not owned (provider=coder or slug labels alone never own).
//
// The synthetic lease ID is lease.SyntheticLeaseID(w.Ref()).
// Slugs are returned normalized.
func Owned(w Workspace, prefix string) (owned bool, leaseID, slug string) {
	label := func(k string) string { return strings.TrimSpace(w.Labels[k]) }
	orSynthetic := func(id string) string {
		if id != "" {
			return id
		}
		return lease.SyntheticLeaseID(w.Ref())
	}

	if legacyID, legacySlug := label("crabbox_lease_id"), label("crabbox_slug"); legacyID != "" || legacySlug != "" {
		return true, orSynthetic(first(legacyID, label("lease"))), lease.NormalizeSlug(first(legacySlug, label("slug")))
	}
	marker := strings.EqualFold(label("crabbox"), "true") || strings.EqualFold(label("created_by"), "crabbox")
	if marker {
		return true, orSynthetic(label("lease")), lease.NormalizeSlug(label("slug"))
	}
	p, err := cleanPrefix(prefix)
	if err != nil || p == "" {
		return false, "", ""
	}
	name := strings.ToLower(strings.TrimSpace(w.Name))
	if rest, ok := strings.CutPrefix(name, p); ok && rest != "" {
		return true, lease.SyntheticLeaseID(w.Ref()), lease.NormalizeSlug(rest)
	}
	return false, "", ""
}
