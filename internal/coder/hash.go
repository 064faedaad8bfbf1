package coder

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"
)

// sha1Hex is the lowercase hex SHA-1 of s.
func sha1Hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// syntheticLeaseID is the stable lease ID of a workspace that has no lease
// of its own (adopted by prefix or marker): "cbx_" + 12 hex of
// SHA-1("coder:<ref>").
func syntheticLeaseID(ref string) string {
	return "cbx_" + sha1Hex("coder:" + ref)[:12]
}

// normalizeSlug is the slug normalization of spec §3.2: lowercase, keep
// [a-z0-9], collapse every run of other characters into one '-', trim '-'.
func normalizeSlug(s string) string { return NormalizeNameBase(s) }

// collapseDashes replaces every run of '-' with a single '-'.
func collapseDashes(s string) string {
	for strings.Contains(s, "--") {
		s = strings.ReplaceAll(s, "--", "-")
	}
	return s
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
