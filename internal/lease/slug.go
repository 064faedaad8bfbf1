package lease

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// MaxSlugLen is the longest slug crabbox creates, after normalization.
const MaxSlugLen = 41

// slugAttempts is how many hashed candidates AllocateSlug tries after the
// base slug is taken.
const slugAttempts = 20

// candidateStemLen is how much of the base a collision candidate keeps, so
// that "<stem>-xxxx" stays within MaxSlugLen (36 + 1 + 4 = 41).
const candidateStemLen = MaxSlugLen - 5

// The generated-slug tables. Their order is part of the format:
// changing it changes every generated slug.
var (
	slugAdjectives = [...]string{
		"amber", "blue", "brisk", "coral", "crimson", "golden", "harbor",
		"jade", "pearl", "quick", "silver", "swift", "tidal", "violet",
	}
	slugNouns = [...]string{
		"barnacle", "crab", "crayfish", "hermit", "krill", "lobster", "prawn", "shrimp",
	}
)

// GeneratedSlug is the friendly "<adjective>-<noun>" slug derived from a
// lease ID: h = FNV-1a-32(leaseID), adjective = adj[h%14],
// noun = noun[(h/14)%8].
func GeneratedSlug(leaseID string) string {
	h := fnv32a(leaseID)
	adj := slugAdjectives[h%uint32(len(slugAdjectives))]
	noun := slugNouns[(h/uint32(len(slugAdjectives)))%uint32(len(slugNouns))]
	return adj + "-" + noun
}

// NormalizeSlug is the normalization used wherever a slug is accepted or
// compared: trim, lowercase, keep [a-z0-9], collapse every run of other
// characters into one "-", and trim leading and trailing "-". The result
// matches ^([a-z0-9]+(-[a-z0-9]+)*)?$. Lowercasing is Unicode
// (strings.ToLower), so e.g. the Kelvin sign becomes "k"; every other
// non-ASCII character counts as an "other character".
func NormalizeSlug(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	var b strings.Builder
	b.Grow(min(len(s), 256))
	pendingDash := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') {
			if pendingDash && b.Len() > 0 {
				b.WriteByte('-')
			}
			pendingDash = false
			b.WriteByte(c)
			continue
		}
		pendingDash = true
	}
	return b.String()
}

// ValidateSlug normalizes a user-supplied --slug and checks it: it must
// contain a letter or digit and be at most MaxSlugLen characters once
// normalized. Errors carry exit code 2.
func ValidateSlug(raw string) (string, error) {
	s := NormalizeSlug(raw)
	if s == "" {
		return "", exitcode.Errorf(exitcode.Usage, "--slug must contain at least one letter or digit")
	}
	if len(s) > MaxSlugLen {
		return "", exitcode.Errorf(exitcode.Usage, "--slug must be at most %d characters after normalization", MaxSlugLen)
	}
	return s, nil
}

// AllocateSlug picks a slug for a new lease that inUse does not report as
// taken. inUse gets normalized slugs; nil means nothing is in use.
//
//  1. The base: base normalized (an empty result falls back to
//     GeneratedSlug(leaseID)), truncated to MaxSlugLen with trailing "-"
//     trimmed.
//  2. Attempts 1..20: "<stem>-<4 hex>", the 4 hex digits being the low 16
//     bits of FNV-1a-32("<leaseID>-<attempt>"). Our choice: stem is the base
//     cut to 36 characters (trailing "-" trimmed) so every candidate stays
//     within MaxSlugLen.
//  3. One fallback seeded by the lease ID: GeneratedSlug(leaseID) + "-" + 6
//     hex digits (the lease ID's own hex digits for a canonical ID, else the
//     first 6 hex digits of SHA-1(leaseID)).
//
// When all are taken it fails with exit code 2.
func AllocateSlug(base, leaseID string, inUse func(string) bool) (string, error) {
	taken := func(s string) bool { return inUse != nil && inUse(s) }

	b := NormalizeSlug(base)
	if b == "" {
		b = GeneratedSlug(leaseID)
	}
	b = truncateSlug(b, MaxSlugLen)
	if !taken(b) {
		return b, nil
	}
	stem := truncateSlug(b, candidateStemLen)
	for attempt := 1; attempt <= slugAttempts; attempt++ {
		c := fmt.Sprintf("%s-%04x", stem, fnv32a(fmt.Sprintf("%s-%d", leaseID, attempt))&0xffff)
		if !taken(c) {
			return c, nil
		}
	}
	if fb := fallbackSlug(leaseID); !taken(fb) {
		return fb, nil
	}
	return "", exitcode.Errorf(exitcode.Usage, "could not allocate a unique lease slug")
}

func fallbackSlug(leaseID string) string {
	var suffix string
	if IsLeaseID(leaseID) {
		suffix = leaseID[len(LeaseIDPrefix) : len(LeaseIDPrefix)+6]
	} else {
		sum := sha1.Sum([]byte(leaseID))
		suffix = hex.EncodeToString(sum[:3])
	}
	return GeneratedSlug(leaseID) + "-" + suffix
}

// truncateSlug cuts a normalized slug to at most n bytes and trims trailing
// dashes.
func truncateSlug(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.TrimRight(s, "-")
}

func fnv32a(s string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return h.Sum32()
}
