package lease

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"regexp"
)

// Prefixes of the identifiers crabbox mints.
const (
	LeaseIDPrefix = "cbx_"
	RunIDPrefix   = "run_"
)

var (
	leaseIDRe = regexp.MustCompile(`^cbx_[a-f0-9]{12}$`)
	runIDRe   = regexp.MustCompile(`^run_[a-f0-9]{12}$`)
)

// NewLeaseID mints a canonical lease ID: "cbx_" + 12 lowercase hex digits
// from 6 crypto-random bytes.
func NewLeaseID() string { return LeaseIDPrefix + randomHex(6) }

// NewRunID mints a run ID: "run_" + 12 lowercase hex digits from 6
// crypto-random bytes.
func NewRunID() string { return RunIDPrefix + randomHex(6) }

// IsLeaseID reports whether s is a canonical lease ID (^cbx_[a-f0-9]{12}$).
// Anything else is treated as a slug or another identifier.
func IsLeaseID(s string) bool { return leaseIDRe.MatchString(s) }

// IsRunID reports whether s is a run ID (^run_[a-f0-9]{12}$).
func IsRunID(s string) bool { return runIDRe.MatchString(s) }

// SyntheticLeaseID is the stable lease ID given to a workspace crabbox did
// not mint an ID for (an adopted Coder workspace): "cbx_" + the first 12 hex
// digits of SHA-1("coder:" + ref), where ref is "owner/name" or "name". It
// matches the canonical lease ID format.
func SyntheticLeaseID(ref string) string {
	sum := sha1.Sum([]byte("coder:" + ref))
	return LeaseIDPrefix + hex.EncodeToString(sum[:])[:12]
}

func randomHex(n int) string {
	b := make([]byte, n)
	// crypto/rand.Read never returns an error (it aborts the program if the
	// system RNG fails), so there is no non-canonical fallback.
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
