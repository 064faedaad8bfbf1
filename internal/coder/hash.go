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

// collapseDashes replaces every run of '-' with a single '-'.
func collapseDashes(s string) string {
	for strings.Contains(s, "--") {
		s = strings.ReplaceAll(s, "--", "-")
	}
	return s
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
