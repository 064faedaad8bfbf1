package coder

import (
	"strings"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
)

const (
	// MaxNameLen is Coder's workspace name limit.
	MaxNameLen = 32
	// collisionSlugBudget is how much of the friendly slug a collision slug
	// keeps: 41 - len("-") - 6 hex.
	collisionSlugBudget = 34
)

// CollisionSlug makes a friendly slug lease-unique: normalize(slug) cut to
// 34 chars, then "-" and the first 6 hex of SHA-1(leaseID) (just the hash
// when nothing of the slug is left).
func CollisionSlug(slug, leaseID string) string {
	s := lease.NormalizeSlug(slug)
	if len(s) > collisionSlugBudget {
		s = strings.Trim(s[:collisionSlugBudget], "-")
	}
	h := sha1Hex(leaseID)[:6]
	if s == "" {
		return h
	}
	return s + "-" + h
}

// UniqueWorkspaceName is WorkspaceName(prefix, CollisionSlug(slug, leaseID), leaseID).
func UniqueWorkspaceName(prefix, slug, leaseID string) (string, error) {
	return WorkspaceName(prefix, CollisionSlug(slug, leaseID), leaseID)
}

// WorkspaceName builds a Coder workspace name from the workspace prefix, a
// (collision) slug and the lease ID. The result is 1–32 chars
// of [a-z0-9-], starts and ends alphanumeric and never holds "--".
// A prefix leaving no room or an unusable result is an exit-2 error.
func WorkspaceName(prefix, collisionSlug, leaseID string) (string, error) {
	p, err := cleanPrefix(prefix)
	if err != nil {
		return "", err
	}
	base := lease.NormalizeSlug(collisionSlug)
	if base == "" {
		base = lease.NormalizeSlug(strings.ReplaceAll(strings.ToLower(leaseID), "_", "-"))
	}
	if base == "" {
		return "", exitcode.Errorf(exitcode.Usage, "coder workspace name needs a slug or a lease id")
	}
	if isReservedName(base) {
		base = "cbx-" + base
	}
	maxBase := MaxNameLen - len(p)
	if maxBase < 1 {
		return "", exitcode.Errorf(exitcode.Usage, "coder.workspacePrefix %q leaves no room for a workspace name", p)
	}
	if len(base) > maxBase {
		// Hash the whole base before cutting, so bases that differ only
		// after the cut still get different names.
		h := sha1Hex(base)[:6]
		if maxBase <= 7 {
			base = h[:min(maxBase, len(h))]
		} else if keep := strings.Trim(base[:maxBase-7], "-"); keep != "" {
			base = keep + "-" + h
		} else {
			base = h
		}
	}
	name := collapseDashes(strings.Trim(p+base, "-"))
	if isReservedName(name) {
		name = "cbx-" + name
	}
	if err := checkName(name); err != nil {
		return "", err
	}
	return name, nil
}

func isReservedName(s string) bool { return s == "new" || s == "create" }

// cleanPrefix normalizes a workspace prefix the way config does (lowercase,
// trimmed, dashes collapsed, exactly one trailing '-'; empty stays empty)
// and rejects characters Coder names cannot hold.
func cleanPrefix(prefix string) (string, error) {
	p := collapseDashes(strings.Trim(strings.ToLower(strings.TrimSpace(prefix)), "-"))
	if p == "" {
		return "", nil
	}
	for i := 0; i < len(p); i++ {
		if !isLowerAlnum(p[i]) && p[i] != '-' {
			return "", exitcode.Errorf(exitcode.Usage, "coder.workspacePrefix %q must contain only a-z, 0-9 and -", prefix)
		}
	}
	return p + "-", nil
}

func checkName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return exitcode.Errorf(exitcode.Usage, "coder workspace name %q must be 1-%d characters", name, MaxNameLen)
	}
	if !isLowerAlnum(name[0]) || !isLowerAlnum(name[len(name)-1]) {
		return exitcode.Errorf(exitcode.Usage, "coder workspace name %q must start and end with a letter or digit", name)
	}
	for i := 0; i < len(name); i++ {
		if !isLowerAlnum(name[i]) && name[i] != '-' {
			return exitcode.Errorf(exitcode.Usage, "coder workspace name %q must contain only a-z, 0-9 and -", name)
		}
	}
	if strings.Contains(name, "--") {
		return exitcode.Errorf(exitcode.Usage, "coder workspace name %q must not contain consecutive hyphens", name)
	}
	return nil
}

// ValidateNewName fails with exit 5 when any inventory row already has the
// bare name (case-insensitive, owner ignored). There is no suffix retry:
// names carry the lease hash, so a collision means something is wrong.
func ValidateNewName(name string, inventory []Workspace) error {
	for _, w := range inventory {
		if strings.EqualFold(w.Name, name) {
			return exitcode.Errorf(exitcode.NotFound, "coder workspace name %q collides with existing inventory", name)
		}
	}
	return nil
}
