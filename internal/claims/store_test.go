package claims

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

const (
	idA = "cbx_aaaaaaaaaaaa"
	idB = "cbx_bbbbbbbbbbbb"
	idC = "cbx_cccccccccccc"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	return New(filepath.Join(t.TempDir(), "state"))
}

func mustUpdate(t *testing.T, s *Store, id string, fn func(c *Claim, exists bool) error) *Claim {
	t.Helper()
	c, err := s.Update(id, fn)
	if err != nil {
		t.Fatalf("Update(%s): %v", id, err)
	}
	return c
}

func writeRaw(t *testing.T, s *Store, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(s.ClaimsDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.ClaimsDir(), name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func perm(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestUpdateWritesAtomicallyWithModes(t *testing.T) {
	s := newStore(t)
	c := mustUpdate(t, s, idA, func(c *Claim, exists bool) error {
		if exists {
			t.Error("exists for a new claim")
		}
		if c.LeaseID != idA {
			t.Errorf("fresh claim LeaseID = %q", c.LeaseID)
		}
		c.Slug = "blue-lobster"
		c.Provider = "coder"
		c.RepoRoot = "/src/app"
		c.Labels = map[string]string{"b": "2", "a": "<&>"}
		return nil
	})
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(c.Revision) {
		t.Fatalf("revision %q", c.Revision)
	}

	if p := perm(t, s.Path(idA)); p != 0o600 {
		t.Errorf("claim file mode %o", p)
	}
	for _, d := range []string{s.Dir, s.ClaimsDir(), s.LocksDir()} {
		if p := perm(t, d); p != 0o700 {
			t.Errorf("%s mode %o", d, p)
		}
	}
	if p := perm(t, filepath.Join(s.LocksDir(), idA+".json.lock")); p != 0o600 {
		t.Errorf("lock file mode %o", p)
	}

	data, err := os.ReadFile(s.Path(idA))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{
  "leaseID": "cbx_aaaaaaaaaaaa",
  "revision": "%s",
  "slug": "blue-lobster",
  "provider": "coder",
  "repoRoot": "/src/app",
  "labels": {
    "a": "<&>",
    "b": "2"
  }
}
`, c.Revision)
	if string(data) != want {
		t.Fatalf("file =\n%s\nwant\n%s", data, want)
	}

	entries, _ := os.ReadDir(s.ClaimsDir())
	if len(entries) != 1 {
		t.Fatalf("claims dir holds %d entries (temp file left?)", len(entries))
	}

	// A second write replaces the file and refreshes the revision.
	c2 := mustUpdate(t, s, idA, func(c *Claim, exists bool) error {
		if !exists || c.Slug != "blue-lobster" || c.Labels["b"] != "2" {
			t.Errorf("existing claim not passed: %v %+v", exists, c)
		}
		c.LeaseID = "cbx_tampered000" // LeaseID is forced back
		c.TargetOS = "linux"
		return nil
	})
	if c2.Revision == c.Revision || c2.LeaseID != idA {
		t.Fatalf("second write: %+v", c2)
	}
	got, err := s.Get(idA)
	if err != nil || got == nil || got.Revision != c2.Revision || got.TargetOS != "linux" || got.LeaseID != idA {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if p := perm(t, s.Path(idA)); p != 0o600 {
		t.Errorf("claim file mode after rewrite %o", p)
	}
}

func TestUpdateNoChangeAndErrors(t *testing.T) {
	s := newStore(t)
	c, err := s.Update(idA, func(*Claim, bool) error { return ErrNoChange })
	if err != nil || c != nil {
		t.Fatalf("no-change on absent claim: %+v, %v", c, err)
	}
	if _, err := os.Stat(s.Path(idA)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("no-change created a file")
	}

	first := mustUpdate(t, s, idA, func(c *Claim, _ bool) error { c.RepoRoot = "/r"; return nil })
	c, err = s.Update(idA, func(c *Claim, _ bool) error { c.RepoRoot = "/other"; return ErrNoChange })
	if err != nil || c == nil || c.Revision != first.Revision || c.RepoRoot != "/r" {
		t.Fatalf("no-change: %+v, %v", c, err)
	}

	boom := errors.New("boom")
	if _, err := s.Update(idA, func(c *Claim, _ bool) error { c.RepoRoot = "/x"; return boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if got, _ := s.Get(idA); got.Revision != first.Revision || got.RepoRoot != "/r" {
		t.Fatalf("failed mutation was written: %+v", got)
	}

	// A mutation producing an unreadable claim is refused.
	if _, err := s.Update(idA, func(c *Claim, _ bool) error { c.LastUsedAt = "soon"; return nil }); err == nil {
		t.Fatal("invalid timestamp written")
	}
	if got, _ := s.Get(idA); got.Revision != first.Revision {
		t.Fatal("invalid claim written")
	}
}

func TestGetAbsentCreatesNothing(t *testing.T) {
	s := newStore(t)
	c, err := s.Get(idA)
	if err != nil || c != nil {
		t.Fatalf("Get absent = %+v, %v", c, err)
	}
	if _, err := os.Stat(s.Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("Get of an absent claim created the state dir")
	}
	if err := s.Remove(idA); err != nil {
		t.Fatalf("Remove absent: %v", err)
	}
}

func TestInvalidLeaseIDsNeverEscape(t *testing.T) {
	root := t.TempDir()
	s := New(filepath.Join(root, "state"))
	bad := []string{
		"", ".", "..", "../x", "../../etc/passwd", "a/b", `a\b`, "/abs", " cbx_1", "cbx_1 ", "\tx",
		"a\x00b", "a\nb", "a\x1bb", "a\x7fb", "a:b", "a*b", "a?b", `a"b`, "a<b", "a>b", "a|b",
		"x.", "CON", "con", "Nul", "COM1", "lpt9", "aux.json", ".hidden", "\xff\xfe",
		strings.Repeat("a", MaxLeaseIDLen+1),
	}
	for _, id := range bad {
		if err := ValidateLeaseID(id); err == nil || exitcode.Code(err) != exitcode.Usage {
			t.Errorf("ValidateLeaseID(%q) = %v", id, err)
		}
		if _, err := s.Update(id, func(c *Claim, _ bool) error { c.RepoRoot = "/r"; return nil }); exitcode.Code(err) != exitcode.Usage {
			t.Errorf("Update(%q) err = %v", id, err)
		}
		if _, err := s.Get(id); exitcode.Code(err) != exitcode.Usage {
			t.Errorf("Get(%q) err = %v", id, err)
		}
		if err := s.Remove(id); exitcode.Code(err) != exitcode.Usage {
			t.Errorf("Remove(%q) err = %v", id, err)
		}
	}
	// Nothing at all was created anywhere.
	entries, _ := os.ReadDir(root)
	if len(entries) != 0 {
		t.Fatalf("invalid IDs created %v", entries)
	}
	for _, id := range []string{idA, "legacy-20260101T000000", "my lease", "cbx_A.b"} {
		if err := ValidateLeaseID(id); err != nil {
			t.Errorf("ValidateLeaseID(%q) = %v", id, err)
		}
	}
}

func TestMisfiledClaimRefused(t *testing.T) {
	s := newStore(t)
	body := []byte(`{"leaseID":"` + idB + `","revision":"r","repoRoot":"/r"}` + "\n")
	writeRaw(t, s, idA+".json", body)

	_, err := s.Get(idA)
	var ce *ClaimError
	if err == nil || !errors.As(err, &ce) || ce.Problem.Code != CodeLeaseIDMismatch || !strings.Contains(err.Error(), "misfiled claim") {
		t.Fatalf("Get misfiled: %v", err)
	}
	if exitcode.Code(err) != exitcode.Usage {
		t.Fatalf("exit code %d", exitcode.Code(err))
	}
	if _, err := s.Update(idA, func(c *Claim, _ bool) error { c.RepoRoot = "/x"; return nil }); err == nil || !strings.Contains(err.Error(), "misfiled claim") {
		t.Fatalf("Update misfiled: %v", err)
	}
	if data, _ := os.ReadFile(s.Path(idA)); string(data) != string(body) {
		t.Fatal("misfiled claim was overwritten")
	}
	// Remove (no parsing) can still clear it.
	if err := s.Remove(idA); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Path(idA)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("not removed")
	}
}

func TestListReportsProblemsAndOthersKeepWorking(t *testing.T) {
	s := newStore(t)
	good := func(id, slug, provider string) {
		mustUpdate(t, s, id, func(c *Claim, _ bool) error {
			c.Slug, c.Provider, c.RepoRoot = slug, provider, "/src/"+slug
			return nil
		})
	}
	good(idB, "blue-lobster", "coder")
	good(idA, "amber-crab", "coder")

	bigClaim := `{"leaseID":"cbx_000000000003","repoRoot":"/r","labels":{"x":"` + strings.Repeat("y", MaxClaimSize) + `"}}`
	files := map[string]struct {
		data string
		code string
	}{
		"cbx_000000000001.json": {`{"leaseID":"cbx_000000000001","repoRo`, CodeInvalidJSON},
		"cbx_000000000002.json": {"\x00\x01garbage\xff", CodeInvalidJSON},
		"cbx_000000000003.json": {bigClaim, CodeClaimTooLarge},
		"cbx_000000000004.json": {`{"leaseID":"","repoRoot":"/r"}`, CodeEmptyLeaseID},
		"cbx_000000000005.json": {`{"leaseID":"cbx_999999999999","repoRoot":"/r"}`, CodeLeaseIDMismatch},
		"cbx_000000000006.json": {"", CodeInvalidJSON},
		"cbx_000000000007.json": {`null`, CodeInvalidClaim},
		"cbx_000000000008.json": {`["cbx_000000000008"]`, CodeInvalidClaim},
		"cbx_000000000009.json": {`{"leaseID":"cbx_000000000009","sshPort":"22"}`, CodeInvalidClaim},
		"cbx_00000000000a.json": {`{"leaseID":"cbx_00000000000a","lastUsedAt":"tuesday"}`, CodeInvalidClaim},
		"cbx_00000000000b.json": {`{"leaseID":"cbx_00000000000b"}{"x":1}`, CodeInvalidJSON},
		"CON.json":              {`{"leaseID":"CON"}`, CodeInvalidFilename},
		".hidden.json":          {`{}`, CodeInvalidFilename},
		"bad\x01name.json":      {`{}`, CodeInvalidFilename},
		".json":                 {`{}`, CodeInvalidFilename},
	}
	for name, f := range files {
		writeRaw(t, s, name, []byte(f.data))
	}
	// A directory and a symlink named like claims.
	if err := os.Mkdir(filepath.Join(s.ClaimsDir(), "x.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(s.Path(idA), filepath.Join(s.ClaimsDir(), "cbx_00000000000c.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(s.ClaimsDir(), "cbx_00000000000d.json")); err != nil {
		t.Fatal(err)
	}
	// Skipped: temp files, lock files, non-claim files.
	writeRaw(t, s, "."+idA+".json.tmp-12345", []byte("partial"))
	writeRaw(t, s, idA+".json.lock", nil)
	writeRaw(t, s, "README.txt", []byte("hi"))

	cs, problems, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0].LeaseID != idA || cs[1].LeaseID != idB {
		t.Fatalf("claims = %+v", cs)
	}
	got := map[string]string{}
	for _, p := range problems {
		if p.Message == "" {
			t.Errorf("problem without message: %+v", p)
		}
		got[p.File] = p.Code
	}
	wantCodes := map[string]string{
		"x.json":                CodeNonRegularFile,
		"cbx_00000000000c.json": CodeNonRegularFile,
		"cbx_00000000000d.json": CodeNonRegularFile,
	}
	for name, f := range files {
		wantCodes[displayName(name)] = f.code
	}
	for name, code := range wantCodes {
		if got[name] != code {
			t.Errorf("%q: code %q, want %q", name, got[name], code)
		}
	}
	if len(problems) != len(wantCodes) {
		t.Errorf("%d problems, want %d: %+v", len(problems), len(wantCodes), problems)
	}
	for _, p := range problems {
		if strings.ContainsRune(p.File, '\x01') {
			t.Errorf("unsafe file name leaked: %q", p.File)
		}
	}
	if _, ok := got[displayName("bad\x01name.json")]; !ok || !strings.HasPrefix(displayName("bad\x01name.json"), "sha256:") {
		t.Errorf("unsafe name not hashed: %v", got)
	}

	// Other leases keep working.
	if c, err := s.Get(idA); err != nil || c == nil || c.Slug != "amber-crab" {
		t.Fatalf("Get(%s) = %+v, %v", idA, c, err)
	}
	if _, err := s.Update(idC, func(c *Claim, _ bool) error { c.RepoRoot = "/c"; c.Slug = "coral-krill"; return nil }); err != nil {
		t.Fatal(err)
	}
	// The broken ones are refused individually, never panic.
	for name, f := range files {
		id := strings.TrimSuffix(name, ".json")
		if ValidateLeaseID(id) != nil {
			continue
		}
		if _, err := s.Get(id); err == nil {
			t.Errorf("Get(%s) (%s) accepted", id, f.code)
		}
		if _, err := s.Update(id, func(c *Claim, _ bool) error { c.RepoRoot = "/x"; return nil }); err == nil {
			t.Errorf("Update(%s) (%s) overwrote a broken claim", id, f.code)
		}
	}
	if _, err := s.Get("x"); err == nil {
		t.Error("Get of a directory accepted")
	}
	if err := s.Remove("x"); err == nil {
		t.Error("Remove of a directory accepted")
	}
	// List still reports the same problems afterwards.
	if _, problems2, _ := s.List(); len(problems2) != len(problems) {
		t.Errorf("problems changed: %d -> %d", len(problems), len(problems2))
	}
}

func TestListReadError(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads mode-000 files")
	}
	s := newStore(t)
	writeRaw(t, s, idA+".json", []byte(`{"leaseID":"`+idA+`"}`))
	if err := os.Chmod(s.Path(idA), 0); err != nil {
		t.Fatal(err)
	}
	_, problems, err := s.List()
	if err != nil || len(problems) != 1 || problems[0].Code != CodeReadError {
		t.Fatalf("problems = %+v, %v", problems, err)
	}
}

func TestListMissingStore(t *testing.T) {
	s := newStore(t)
	cs, problems, err := s.List()
	if err != nil || cs == nil || problems == nil || len(cs) != 0 || len(problems) != 0 {
		t.Fatalf("List = %v, %v, %v", cs, problems, err)
	}
	b, _ := json.Marshal(ListOutput{Problems: problems})
	if string(b) != `{"version":1,"source":"local-claims","claims":[],"problems":[]}` {
		t.Fatalf("%s", b)
	}
}

func TestListTruncatesProblems(t *testing.T) {
	s := newStore(t)
	for i := range 150 {
		writeRaw(t, s, fmt.Sprintf("cbx_%012x.json", i), []byte("{"))
	}
	_, problems, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != MaxProblems+1 {
		t.Fatalf("%d problems", len(problems))
	}
	last := problems[MaxProblems]
	if last.Code != CodeProblemsTruncated || last.Message != "50 more problems not shown" {
		t.Fatalf("last = %+v", last)
	}
	for _, p := range problems[:MaxProblems] {
		if p.Code != CodeInvalidJSON {
			t.Fatalf("%+v", p)
		}
	}
}

func TestListSorted(t *testing.T) {
	s := newStore(t)
	for _, id := range []string{idC, idA, idB} {
		mustUpdate(t, s, id, func(c *Claim, _ bool) error { c.RepoRoot = "/r"; return nil })
	}
	cs, _, _ := s.List()
	if len(cs) != 3 || cs[0].LeaseID != idA || cs[1].LeaseID != idB || cs[2].LeaseID != idC {
		t.Fatalf("%+v", cs)
	}
}

func TestRemove(t *testing.T) {
	s := newStore(t)
	mustUpdate(t, s, idA, func(c *Claim, _ bool) error { c.RepoRoot = "/r"; return nil })

	if err := s.Remove(idA); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(idA); got != nil || err != nil {
		t.Fatalf("after Remove: %+v, %v", got, err)
	}
	if err := s.Remove(idA); err != nil {
		t.Fatalf("Remove missing: %v", err)
	}

	mustUpdate(t, s, idB, func(c *Claim, _ bool) error { c.RepoRoot = "/r"; return nil })
	if err := s.Remove(idB); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Path(idB)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("Remove left the file")
	}
	// Lock files stay (deleting them would break mutual exclusion).
	if _, err := os.Stat(filepath.Join(s.LocksDir(), idB+".json.lock")); err != nil {
		t.Fatalf("lock file: %v", err)
	}
}
