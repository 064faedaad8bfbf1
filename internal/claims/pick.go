package claims

import (
	"strings"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
)

// Pick chooses among the claims an identifier matched: the one whose lease
// ID is ident, else the only one. None is (nil, nil); several without an
// exact lease-ID hit is ambiguous (exit 5, naming them).
func Pick(matched []Claim, ident string) (*Claim, error) {
	for i := range matched {
		if matched[i].LeaseID == ident {
			return &matched[i], nil
		}
	}
	switch len(matched) {
	case 0:
		return nil, nil
	case 1:
		return &matched[0], nil
	}
	ids := make([]string, 0, len(matched))
	for _, c := range matched {
		ids = append(ids, c.LeaseID)
	}
	return nil, exitcode.Errorf(exitcode.NotFound, "%q is ambiguous: it matches %d claimed leases (%s); use a lease ID", ident, len(matched), strings.Join(ids, ", "))
}

// AllocateSlug is the slug for new lease id: base (or the slug generated
// from id when base is empty), made unique among the slugs of existing
// (slugs are unique across a state dir). Call it under the store's
// allocation lock so two new leases never get the same one.
func AllocateSlug(existing []Claim, base, id string) (string, error) {
	if base == "" {
		base = lease.GeneratedSlug(id)
	}
	return lease.AllocateSlug(base, id, func(sl string) bool {
		for _, c := range existing {
			if lease.NormalizeSlug(c.Slug) == sl {
				return true
			}
		}
		return false
	})
}
