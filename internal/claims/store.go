package claims

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/fsx"
)

// Layout and limits.
const (
	ClaimsDirName = "claims"
	LocksDirName  = "claim-locks"
	claimExt      = ".json"
	lockExt       = ".json.lock"

	// MaxClaimSize is the largest claim file that is read (1 MiB).
	MaxClaimSize = 1 << 20
	// MaxProblems is how many problems List reports before a final
	// problems_truncated entry.
	MaxProblems = 100
	// MaxLeaseIDLen bounds lease IDs used as file names, leaving room for
	// the ".<name>.tmp-*" temp files within common 255-byte name limits.
	MaxLeaseIDLen = 128

	fileMode fs.FileMode = 0o600
)

// Store is the claims directory of one state dir.
type Store struct {
	// Dir is the crabbox state dir; claims live in Dir/claims.
	Dir string
}

// New returns the claim store of stateDir.
func New(stateDir string) *Store { return &Store{Dir: stateDir} }

// ClaimsDir is <stateDir>/claims.
func (s *Store) ClaimsDir() string { return filepath.Join(s.Dir, ClaimsDirName) }

// LocksDir is <stateDir>/claim-locks.
func (s *Store) LocksDir() string { return filepath.Join(s.Dir, LocksDirName) }

// Path is the claim file of leaseID: <stateDir>/claims/<leaseID>.json. It
// does not validate leaseID; every Store operation does (ValidateLeaseID).
func (s *Store) Path(leaseID string) string {
	return filepath.Join(s.ClaimsDir(), leaseID+claimExt)
}

func (s *Store) lockPath(leaseID string) string {
	return filepath.Join(s.LocksDir(), leaseID+lockExt)
}

// ValidateLeaseID checks that leaseID can name a claim file on any OS: not
// empty, no surrounding whitespace, not "." or "..", none of <>:"/\|?*, NUL
// or control characters, not ending in ".", not a Windows reserved device
// name, no leading "." (hidden and temp files), invalid UTF-8 and IDs longer
// than MaxLeaseIDLen bytes. Errors carry exit code 2.
func ValidateLeaseID(leaseID string) error {
	if reason := fileIDProblem(leaseID); reason != "" {
		return exitcode.Errorf(exitcode.Usage, "invalid lease id %q: %s", leaseID, reason)
	}
	return nil
}

var windowsReserved = func() map[string]bool {
	m := map[string]bool{"CON": true, "PRN": true, "AUX": true, "NUL": true}
	for i := 1; i <= 9; i++ {
		m[fmt.Sprintf("COM%d", i)] = true
		m[fmt.Sprintf("LPT%d", i)] = true
	}
	return m
}()

func fileIDProblem(id string) string {
	switch {
	case id == "":
		return "empty"
	case len(id) > MaxLeaseIDLen:
		return fmt.Sprintf("longer than %d bytes", MaxLeaseIDLen)
	case !utf8.ValidString(id):
		return "not valid UTF-8"
	case strings.TrimSpace(id) != id:
		return "surrounding whitespace"
	case id == "." || id == "..":
		return "reserved name"
	case strings.HasPrefix(id, "."):
		return "starts with a dot"
	case strings.HasSuffix(id, "."):
		return "ends with a dot"
	case strings.ContainsAny(id, `<>:"/\|?*`):
		return "contains a character not allowed in file names"
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f || unicode.IsControl(r) {
			return "contains a control character"
		}
	}
	stem, _, _ := strings.Cut(id, ".")
	if windowsReserved[strings.ToUpper(strings.TrimRight(stem, " "))] {
		return "reserved device name"
	}
	return ""
}

// ---------------------------------------------------------------------------
// Locking

// lock takes the lock of leaseID's claim (fsx.Lock: in-process, then the
// OS file lock; lock files are never deleted).
func (s *Store) lock(leaseID string) (unlock func(), err error) {
	if err := fsx.EnsurePrivateDir(s.LocksDir()); err != nil {
		return nil, err
	}
	unlock, err = fsx.Lock(s.lockPath(leaseID))
	if err != nil {
		return nil, fmt.Errorf("lock claim %s: %w", leaseID, err)
	}
	return unlock, nil
}

// allocateLockName is the store-wide lock taken while a new lease picks
// its slug and writes its first claim (not a lease ID: it has no .json).
const allocateLockName = "allocate.lock"

// Allocate runs fn holding the store-wide allocation lock: concurrent
// processes creating leases (e.g. parallel warmups with the same --slug)
// then see each other's new claims and never allocate the same slug.
func (s *Store) Allocate(fn func() error) error {
	if err := fsx.EnsurePrivateDir(s.LocksDir()); err != nil {
		return err
	}
	unlock, err := fsx.Lock(filepath.Join(s.LocksDir(), allocateLockName))
	if err != nil {
		return fmt.Errorf("claims allocation lock: %w", err)
	}
	defer unlock()
	return fn()
}

func syncDir(dir string) error { return fsx.SyncDir(dir) }

// ---------------------------------------------------------------------------
// Reading

// readClaim reads the claim file at path, expected to belong to leaseID.
// exists is false when there is no file. A non-nil problem means the file is
// there but unusable.
func readClaim(path, leaseID string) (c *Claim, problem *Problem, exists bool) {
	name := filepath.Base(path)
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, false
	}
	if err != nil {
		return nil, newProblem(name, CodeReadError, errMessage(err)), true
	}
	if !fi.Mode().IsRegular() {
		return nil, newProblem(name, CodeNonRegularFile, fmt.Sprintf("not a regular file (%s)", fileKind(fi.Mode()))), true
	}
	if fi.Size() > MaxClaimSize {
		return nil, tooLarge(name), true
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, false
		}
		return nil, newProblem(name, CodeReadError, errMessage(err)), true
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		return nil, newProblem(name, CodeNonRegularFile, fmt.Sprintf("not a regular file (%s)", fileKind(fi.Mode()))), true
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxClaimSize+1))
	if err != nil {
		return nil, newProblem(name, CodeReadError, errMessage(err)), true
	}
	if len(data) > MaxClaimSize {
		return nil, tooLarge(name), true
	}
	c, problem = decodeClaim(name, leaseID, data)
	return c, problem, true
}

func tooLarge(name string) *Problem {
	return newProblem(name, CodeClaimTooLarge, fmt.Sprintf("claim file is larger than %d bytes", MaxClaimSize))
}

// decodeClaim parses a claim file's contents and checks it belongs to
// leaseID.
func decodeClaim(name, leaseID string, data []byte) (*Claim, *Problem) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, newProblem(name, CodeInvalidJSON, "empty file")
	}
	if !json.Valid(data) {
		var v any
		msg := "not valid JSON"
		if err := json.Unmarshal(data, &v); err != nil {
			msg += ": " + err.Error()
		}
		return nil, newProblem(name, CodeInvalidJSON, msg)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		return nil, newProblem(name, CodeInvalidClaim, "claim is not a JSON object")
	}
	var c Claim
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, newProblem(name, CodeInvalidClaim, errMessage(err))
	}
	if c.LeaseID == "" {
		return nil, newProblem(name, CodeEmptyLeaseID, "claim has an empty leaseID")
	}
	if c.LeaseID != leaseID {
		return nil, newProblem(name, CodeLeaseIDMismatch,
			fmt.Sprintf("leaseID %s does not match the file name", quoteShort(c.LeaseID)))
	}
	if msg := fieldProblem(&c); msg != "" {
		return nil, newProblem(name, CodeInvalidClaim, msg)
	}
	return &c, nil
}

// fieldProblem checks the fields crabbox relies on.
func fieldProblem(c *Claim) string {
	for _, f := range []struct{ name, v string }{{"claimedAt", c.ClaimedAt}, {"lastUsedAt", c.LastUsedAt}} {
		if f.v == "" {
			continue
		}
		if _, err := time.Parse(time.RFC3339, f.v); err != nil {
			return fmt.Sprintf("%s %s is not an RFC3339 time", f.name, quoteShort(f.v))
		}
	}
	if c.IdleTimeoutSeconds < 0 {
		return "idleTimeoutSeconds is negative"
	}
	if c.SSHPort < 0 || c.SSHPort > 65535 {
		return fmt.Sprintf("sshPort %d is out of range", c.SSHPort)
	}
	return ""
}

func newProblem(file, code, msg string) *Problem {
	return &Problem{File: displayName(file), Code: code, Message: msg}
}

func claimError(path string, p *Problem) error {
	code := exitcode.Usage
	if p.Code == CodeReadError {
		code = exitcode.Failure
	}
	return exitcode.New(code, &ClaimError{Path: path, Problem: *p})
}

func errMessage(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}

func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return fmt.Sprintf("%q", s)
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "irregular file"
}

// displayName is the file name as reported in problems: names that are not
// valid UTF-8, contain non-printable characters or are longer than 128 bytes
// are replaced by "sha256:<first 16 hex digits of SHA-256(name)>".
func displayName(name string) string {
	safe := utf8.ValidString(name) && len(name) <= 128
	if safe {
		for _, r := range name {
			if !unicode.IsPrint(r) {
				safe = false
				break
			}
		}
	}
	if safe {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return "sha256:" + hex.EncodeToString(sum[:])[:16]
}

// Get reads the claim of leaseID under its lock. It returns nil, nil when
// there is no claim (without creating a lock file). An unusable claim file
// (garbage, misfiled, …) is an error wrapping *ClaimError.
func (s *Store) Get(leaseID string) (*Claim, error) {
	if err := ValidateLeaseID(leaseID); err != nil {
		return nil, err
	}
	path := s.Path(leaseID)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	unlock, err := s.lock(leaseID)
	if err != nil {
		return nil, err
	}
	defer unlock()
	c, problem, exists := readClaim(path, leaseID)
	if !exists {
		return nil, nil
	}
	if problem != nil {
		return nil, claimError(path, problem)
	}
	return c, nil
}

// ---------------------------------------------------------------------------
// Writing

// Update creates or mutates the claim of leaseID under its lock:
// it reads the current claim (refusing an unusable or misfiled one), calls fn
// with a copy (exists=false: a fresh Claim with only LeaseID set), then sets
// LeaseID, refreshes Revision and writes the file atomically. If fn returns
// ErrNoChange nothing is written and the current claim (nil when none) is
// returned; any other error from fn is returned as is.
func (s *Store) Update(leaseID string, fn func(c *Claim, exists bool) error) (*Claim, error) {
	if err := ValidateLeaseID(leaseID); err != nil {
		return nil, err
	}
	if err := fsx.EnsurePrivateDir(s.ClaimsDir()); err != nil {
		return nil, err
	}
	unlock, err := s.lock(leaseID)
	if err != nil {
		return nil, err
	}
	defer unlock()

	path := s.Path(leaseID)
	cur, problem, exists := readClaim(path, leaseID)
	if problem != nil {
		return nil, claimError(path, problem)
	}
	c := Claim{LeaseID: leaseID}
	if exists {
		c = cloneClaim(*cur)
	}
	if fn != nil {
		if err := fn(&c, exists); err != nil {
			if errors.Is(err, ErrNoChange) {
				return cur, nil
			}
			return nil, err
		}
	}
	c.LeaseID = leaseID
	c.Revision = newRevision()
	if msg := fieldProblem(&c); msg != "" {
		return nil, fmt.Errorf("refusing to write claim %s: %s", leaseID, msg)
	}
	data, err := encodeClaim(&c)
	if err != nil {
		return nil, err
	}
	if err := writeAtomic(path, data); err != nil {
		return nil, err
	}
	out := cloneClaim(c)
	return &out, nil
}

// Remove deletes the claim of leaseID under its lock; a missing claim is
// fine. A non-regular file in its place is refused.
func (s *Store) Remove(leaseID string) error {
	if err := ValidateLeaseID(leaseID); err != nil {
		return err
	}
	path := s.Path(leaseID)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	unlock, err := s.lock(leaseID)
	if err != nil {
		return err
	}
	defer unlock()

	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return claimError(path, newProblem(filepath.Base(path), CodeNonRegularFile,
			fmt.Sprintf("not a regular file (%s)", fileKind(fi.Mode()))))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func encodeClaim(c *Claim) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(c); err != nil { // Encode adds the trailing newline
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeAtomic writes data to path atomically and durably (mode 0600).
func writeAtomic(path string, data []byte) error {
	return fsx.WriteFileAtomic(path, data, fileMode)
}

func newRevision() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (Go ≥ 1.24)
	return hex.EncodeToString(b)
}

func cloneClaim(c Claim) Claim {
	if c.Labels != nil {
		m := make(map[string]string, len(c.Labels))
		for k, v := range c.Labels {
			m[k] = v
		}
		c.Labels = m
	}
	return c
}

// ---------------------------------------------------------------------------
// Scanning

// isTempName reports whether name is one of our temp files ".<name>.tmp-*".
func isTempName(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-")
}

// List scans the claims directory without taking locks (writes are atomic
// renames, so a read sees a whole old or new file). It returns the usable
// claims sorted by leaseID, provider, slug, and the problems found (at most
// MaxProblems, then one problems_truncated entry). Only "*.json" entries
// are considered; temp files and lock files are skipped. A missing claims
// directory is an empty store.
func (s *Store) List() ([]Claim, []Problem, error) {
	entries, err := os.ReadDir(s.ClaimsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return []Claim{}, []Problem{}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	cs := []Claim{}
	var problems []Problem
	for _, e := range entries {
		name := e.Name()
		if isTempName(name) || strings.HasSuffix(name, ".lock") || !strings.HasSuffix(name, claimExt) {
			continue
		}
		stem := strings.TrimSuffix(name, claimExt)
		if reason := fileIDProblem(stem); reason != "" {
			problems = append(problems, *newProblem(name, CodeInvalidFilename,
				"file name is not a valid lease ID: "+reason))
			continue
		}
		c, problem, exists := readClaim(filepath.Join(s.ClaimsDir(), name), stem)
		switch {
		case !exists:
			continue // removed while scanning
		case problem != nil:
			problems = append(problems, *problem)
		default:
			cs = append(cs, *c)
		}
	}
	sort.SliceStable(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.LeaseID != b.LeaseID {
			return a.LeaseID < b.LeaseID
		}
		if a.Provider != b.Provider {
			return a.Provider < b.Provider
		}
		return a.Slug < b.Slug
	})
	if len(problems) > MaxProblems {
		more := len(problems) - MaxProblems
		problems = append(problems[:MaxProblems:MaxProblems], Problem{
			File:    "",
			Code:    CodeProblemsTruncated,
			Message: fmt.Sprintf("%d more problems not shown", more),
		})
	}
	if problems == nil {
		problems = []Problem{}
	}
	return cs, problems, nil
}
