// Package claims stores local lease claims: one JSON file per lease under
// <stateDir>/claims, guarded by per-lease lock files under
// <stateDir>/claim-locks (docs/providers/coder.md, Claims).
package claims

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// Claim is one local claim file. JSON field names are part of the on-disk
// format.
type Claim struct {
	LeaseID  string `json:"leaseID"`
	Revision string `json:"revision"`
	Slug     string `json:"slug,omitempty"`
	Provider string `json:"provider,omitempty"`
	// CloudID is the canonical workspace ref "owner/name" for Coder.
	CloudID string `json:"cloudID,omitempty"`
	// WorkspaceID is the Coder workspace ID: a recreated workspace of the
	// same name is another workspace.
	WorkspaceID string `json:"workspaceID,omitempty"`
	// CoderURL is the Coder deployment URL the claim belongs to; claims of
	// another deployment are ignored.
	CoderURL string `json:"coderURL,omitempty"`
	RepoRoot string `json:"repoRoot"`
	// ClaimedAt and LastUsedAt are RFC3339 UTC timestamps.
	ClaimedAt          string            `json:"claimedAt,omitempty"`
	LastUsedAt         string            `json:"lastUsedAt,omitempty"`
	IdleTimeoutSeconds int64             `json:"idleTimeoutSeconds,omitempty"`
	TargetOS           string            `json:"targetOS,omitempty"`
	SSHHost            string            `json:"sshHost,omitempty"`
	SSHPort            int               `json:"sshPort,omitempty"`
	Labels             map[string]string `json:"labels,omitempty"`
}

// ExpiryGrace is added to a claim's idle timeout before cleanup may treat it
// as expired.
const ExpiryGrace = 12 * time.Hour

// Expired reports whether cleanup may treat the claim as expired:
// now > lastUsedAt + idleTimeoutSeconds + 12h. A claim with an unparseable
// or zero lastUsedAt, or idleTimeoutSeconds <= 0, is active forever.
func (c Claim) Expired(now time.Time) bool {
	if c.IdleTimeoutSeconds <= 0 || c.LastUsedAt == "" {
		return false
	}
	last, err := time.Parse(time.RFC3339, c.LastUsedAt)
	if err != nil || last.IsZero() || last.Unix() <= 0 {
		return false
	}
	const maxIdle = int64(100 * 365 * 24 * 3600) // keep the Duration from overflowing
	idle := min(c.IdleTimeoutSeconds, maxIdle)
	deadline := last.Add(time.Duration(idle)*time.Second + ExpiryGrace)
	return now.After(deadline)
}

// Bind applies the repo-binding rules to c inside an Update:
//
//   - an existing claim bound to a different, non-empty repo root is refused
//     (exit 2) unless reclaim is set;
//   - claimedAt is (re)set when absent, on reclaim, or on a repo change;
//   - repoRoot is set and lastUsedAt becomes now (RFC3339 UTC).
//
// An empty repoRoot makes Bind return ErrNoChange, so an Update that binds
// without a repo is a silent no-op (as upstream: claims need a repo root).
// Repo roots are compared after filepath.Clean.
func Bind(c *Claim, exists bool, repoRoot string, reclaim bool, now time.Time) error {
	if repoRoot == "" {
		return ErrNoChange
	}
	repoRoot = filepath.Clean(repoRoot)
	old := c.RepoRoot
	changed := false
	if exists && old != "" && filepath.Clean(old) != repoRoot {
		if !reclaim {
			return exitcode.Refusef(
				"lease %s is claimed by repo %s; use --reclaim to claim it for %s", c.LeaseID, old, repoRoot)
		}
		changed = true
	}
	if !exists || c.ClaimedAt == "" || reclaim || changed || old == "" {
		c.ClaimedAt = formatTime(now)
	}
	c.RepoRoot = repoRoot
	c.LastUsedAt = formatTime(now)
	return nil
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// View is the claim as shown by `claims list --json`: no hosts, labels or
// cloud resource IDs.
type View struct {
	LeaseID            string `json:"leaseId"`
	Slug               string `json:"slug"`
	Provider           string `json:"provider"`
	RepoRoot           string `json:"repoRoot"`
	TargetOS           string `json:"targetOS"`
	ClaimedAt          string `json:"claimedAt"`
	LastUsedAt         string `json:"lastUsedAt"`
	IdleTimeoutSeconds int64  `json:"idleTimeoutSeconds"`
}

// View returns the list view of c.
func (c Claim) View() View {
	return View{
		LeaseID:            c.LeaseID,
		Slug:               c.Slug,
		Provider:           c.Provider,
		RepoRoot:           c.RepoRoot,
		TargetOS:           c.TargetOS,
		ClaimedAt:          c.ClaimedAt,
		LastUsedAt:         c.LastUsedAt,
		IdleTimeoutSeconds: c.IdleTimeoutSeconds,
	}
}

// ListVersion and ListSource identify the `claims list --json` envelope.
const (
	ListVersion = 1
	ListSource  = "local-claims"
)

// ListOutput is the `claims list --json` envelope. Claims and Problems are
// always encoded as arrays, never null.
type ListOutput struct {
	Version  int       `json:"version"`
	Source   string    `json:"source"`
	Claims   []View    `json:"claims"`
	Problems []Problem `json:"problems"`
}

// MarshalJSON encodes the envelope with nil slices as empty arrays and the
// version/source defaulted.
func (o ListOutput) MarshalJSON() ([]byte, error) {
	type plain ListOutput
	p := plain(o)
	if p.Version == 0 {
		p.Version = ListVersion
	}
	if p.Source == "" {
		p.Source = ListSource
	}
	if p.Claims == nil {
		p.Claims = []View{}
	}
	if p.Problems == nil {
		p.Problems = []Problem{}
	}
	return json.Marshal(p)
}

// Problem is one malformed entry in the claims directory.
type Problem struct {
	File    string `json:"file"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Problem codes reported by List.
const (
	CodeInvalidFilename   = "invalid_filename"
	CodeInvalidJSON       = "invalid_json"
	CodeClaimTooLarge     = "claim_too_large"
	CodeEmptyLeaseID      = "empty_lease_id"
	CodeLeaseIDMismatch   = "lease_id_mismatch"
	CodeReadError         = "read_error"
	CodeNonRegularFile    = "non_regular_file"
	CodeInvalidClaim      = "invalid_claim"
	CodeProblemsTruncated = "problems_truncated"
)

// ClaimError is a claim file that could not be used. Errors returned by the
// Store for unusable claim files wrap a *ClaimError (and carry exit code 2).
type ClaimError struct {
	Path    string
	Problem Problem
}

func (e *ClaimError) Error() string {
	if e.Problem.Code == CodeLeaseIDMismatch {
		return fmt.Sprintf("misfiled claim %s: %s", e.Path, e.Problem.Message)
	}
	return fmt.Sprintf("claim %s: %s: %s", e.Path, e.Problem.Code, e.Problem.Message)
}

// ErrNoChange, returned by an Update mutation, makes Update leave the claim
// file untouched and return the current claim (nil when there is none).
var ErrNoChange = errors.New("claims: no change")
