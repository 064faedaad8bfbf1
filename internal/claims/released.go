package claims

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/fsx"
)

// ReleasedDirName holds the released records: <stateDir>/released/<leaseID>.json.
// A released record is kept when a lease is released by stopping its
// workspace, so the stopped workspace stays known (list, stop, reuse by a
// later one-shot run, cleanup --released-older-than). Claim files are not
// touched by any of this: their on-disk format is unchanged.
const ReleasedDirName = "released"

// Released is one released record. JSON field names are part of the
// on-disk format.
type Released struct {
	LeaseID     string `json:"leaseID"`
	Slug        string `json:"slug,omitempty"`
	Provider    string `json:"provider,omitempty"`
	WorkspaceID string `json:"workspaceID"`
	// Workspace is the bare workspace name, Ref the canonical owner/name.
	Workspace string `json:"workspace"`
	Ref       string `json:"ref,omitempty"`
	CoderURL  string `json:"coderURL,omitempty"`
	Template  string `json:"template,omitempty"`
	Preset    string `json:"preset,omitempty"`
	// Parameters are the --parameter values the workspace was created with.
	Parameters []string `json:"parameters,omitempty"`
	// CreateKey identifies the create settings (template, preset,
	// parameters, defaults, rich parameter file content); a one-shot run
	// reuses the workspace only when its own key is the same. Empty never
	// matches.
	CreateKey string `json:"createKey,omitempty"`
	RepoRoot  string `json:"repoRoot,omitempty"`
	// ReleasedAt is an RFC3339 UTC time.
	ReleasedAt string `json:"releasedAt"`
}

// ReleasedTime is ReleasedAt parsed (zero when unparseable).
func (r Released) ReleasedTime() time.Time {
	t, err := time.Parse(time.RFC3339, r.ReleasedAt)
	if err != nil {
		return time.Time{}
	}
	return t
}

// ReleasedDir is <stateDir>/released.
func (s *Store) ReleasedDir() string { return filepath.Join(s.Dir, ReleasedDirName) }

func (s *Store) releasedPath(leaseID string) string {
	return filepath.Join(s.ReleasedDir(), leaseID+claimExt)
}

// Tx is what a function run under the store-wide allocation lock may do
// with the released records. Every change to released records goes through
// a Tx, so taking a record for reuse is exclusive: two processes never
// both get the same released workspace.
type Tx struct{ s *Store }

// AllocateTx is Allocate with a Tx for the released records.
func (s *Store) AllocateTx(fn func(tx *Tx) error) error {
	return s.Allocate(func() error { return fn(&Tx{s: s}) })
}

// Released lists the usable released records, newest release first.
// Unusable files are skipped.
func (tx *Tx) Released() ([]Released, error) { return tx.s.ListReleased() }

// PutReleased writes r (replacing a record of the same lease) and removes
// any other record naming the same workspace ID.
func (tx *Tx) PutReleased(r Released) error {
	if err := ValidateLeaseID(r.LeaseID); err != nil {
		return err
	}
	if r.WorkspaceID == "" {
		return fmt.Errorf("released record %s has no workspace ID", r.LeaseID)
	}
	if _, err := time.Parse(time.RFC3339, r.ReleasedAt); err != nil {
		return fmt.Errorf("released record %s: releasedAt %q is not an RFC3339 time", r.LeaseID, r.ReleasedAt)
	}
	if err := tx.DropWorkspace(r.WorkspaceID, r.LeaseID); err != nil {
		return err
	}
	if err := fsx.EnsurePrivateDir(tx.s.ReleasedDir()); err != nil {
		return err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return err
	}
	return writeAtomic(tx.s.releasedPath(r.LeaseID), buf.Bytes())
}

// RemoveReleased deletes the record of leaseID; a missing one is fine.
func (tx *Tx) RemoveReleased(leaseID string) error {
	if err := ValidateLeaseID(leaseID); err != nil {
		return err
	}
	p := tx.s.releasedPath(leaseID)
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("released record %s is not a regular file", p)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(filepath.Dir(p))
}

// DropWorkspace removes every record naming workspaceID except the one of
// keepLease (may be "").
func (tx *Tx) DropWorkspace(workspaceID, keepLease string) error {
	if workspaceID == "" {
		return nil
	}
	recs, err := tx.Released()
	if err != nil {
		return err
	}
	for _, r := range recs {
		if r.WorkspaceID == workspaceID && r.LeaseID != keepLease {
			if err := tx.RemoveReleased(r.LeaseID); err != nil {
				return err
			}
		}
	}
	return nil
}

// PutReleased is AllocateTx(tx.PutReleased(r)).
func (s *Store) PutReleased(r Released) error {
	return s.AllocateTx(func(tx *Tx) error { return tx.PutReleased(r) })
}

// DropReleasedWorkspace is AllocateTx(tx.DropWorkspace(workspaceID, "")).
func (s *Store) DropReleasedWorkspace(workspaceID string) error {
	return s.AllocateTx(func(tx *Tx) error { return tx.DropWorkspace(workspaceID, "") })
}

// ListReleased reads the released records without a lock (writes are
// atomic renames), newest release first. Unusable files (bad JSON, a
// lease ID that does not match the file name, no workspace ID) are skipped.
// A missing directory is no records.
func (s *Store) ListReleased() ([]Released, error) {
	entries, err := os.ReadDir(s.ReleasedDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Released
	for _, e := range entries {
		name := e.Name()
		if isTempName(name) || !strings.HasSuffix(name, claimExt) || !e.Type().IsRegular() {
			continue
		}
		stem := strings.TrimSuffix(name, claimExt)
		if fileIDProblem(stem) != "" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.ReleasedDir(), name))
		if err != nil || len(data) > MaxClaimSize {
			continue
		}
		var r Released
		if json.Unmarshal(data, &r) != nil || r.LeaseID != stem || r.WorkspaceID == "" || r.ReleasedTime().IsZero() {
			continue
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool {
		ti, tj := out[i].ReleasedTime(), out[j].ReleasedTime()
		if !ti.Equal(tj) {
			return ti.After(tj)
		}
		return out[i].LeaseID < out[j].LeaseID
	})
	return out, nil
}
