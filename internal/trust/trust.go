// Package trust records which repository config files the user trusted,
// pinned to their exact content (like `direnv allow` or `mise trust`).
//
// A repo config file is written by whoever wrote the checkout. Keys that
// choose what runs on this machine, what leaves it, or what gets destroyed
// are only honoured from a repo file whose path and SHA-256 are recorded
// here; editing the file makes it untrusted again.
package trust

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/crabbox-dev/crabbox/internal/fsx"
)

// FileName is the store's file inside the state dir.
const FileName = "trust.json"

// Entry is one trusted file.
type Entry struct {
	Path      string    `json:"path"`
	SHA256    string    `json:"sha256"`
	TrustedAt time.Time `json:"trustedAt"`
}

// Store is the trust list in a state dir. The zero value is not usable.
type Store struct {
	path string
}

// New returns the store kept in stateDir.
func New(stateDir string) *Store { return &Store{path: filepath.Join(stateDir, FileName)} }

// Path is the store's file.
func (s *Store) Path() string { return s.path }

// Sum is the hex SHA-256 of data.
func Sum(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// List returns every entry, sorted by path. A missing store is empty.
func (s *Store) List() ([]Entry, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.path, err)
	}
	var doc struct {
		Files []Entry `json:"files"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.path, err)
	}
	sort.Slice(doc.Files, func(i, j int) bool { return doc.Files[i].Path < doc.Files[j].Path })
	return doc.Files, nil
}

// Trusted reports whether the file at path with exactly this content was
// trusted. Any error reading the store counts as untrusted.
func (s *Store) Trusted(path string, data []byte) bool {
	list, err := s.List()
	if err != nil {
		return false
	}
	sum := Sum(data)
	for _, e := range list {
		if e.Path == clean(path) && e.SHA256 == sum {
			return true
		}
	}
	return false
}

// Trust records path with data's hash, replacing an older entry for the
// same path.
func (s *Store) Trust(path string, data []byte, now time.Time) (Entry, error) {
	e := Entry{Path: clean(path), SHA256: Sum(data), TrustedAt: now.UTC().Truncate(time.Second)}
	list, err := s.List()
	if err != nil {
		return e, err
	}
	out := []Entry{e}
	for _, old := range list {
		if old.Path != e.Path {
			out = append(out, old)
		}
	}
	return e, s.write(out)
}

// Revoke drops path; it reports whether it was there.
func (s *Store) Revoke(path string) (bool, error) {
	list, err := s.List()
	if err != nil {
		return false, err
	}
	var out []Entry
	found := false
	for _, e := range list {
		if e.Path == clean(path) {
			found = true
			continue
		}
		out = append(out, e)
	}
	if !found {
		return false, nil
	}
	return true, s.write(out)
}

func (s *Store) write(list []Entry) error {
	sort.Slice(list, func(i, j int) bool { return list[i].Path < list[j].Path })
	if list == nil {
		list = []Entry{}
	}
	data, err := json.MarshalIndent(struct {
		Files []Entry `json:"files"`
	}{list}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return err
	}
	return fsx.WriteFileAtomic(s.path, append(data, '\n'), 0o600)
}

// clean makes path absolute and clean, so one file has one entry.
func clean(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return filepath.Clean(path)
}
