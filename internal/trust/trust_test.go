package trust

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestStore: a trusted path and content is trusted; other content, other
// paths, a revoked entry and an unreadable store are not; the file is 0600
// in a 0700 dir.
func TestStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := New(dir)
	a := filepath.Join(t.TempDir(), "crabbox.yaml")
	if s.Trusted(a, []byte("x")) {
		t.Fatal("empty store trusts")
	}
	if _, err := s.Trust(a, []byte("x"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if !s.Trusted(a, []byte("x")) {
		t.Fatal("trusted content not trusted")
	}
	if s.Trusted(a, []byte("x\n")) || s.Trusted(a+"2", []byte("x")) {
		t.Fatal("other content or path trusted")
	}
	// Re-trusting replaces the entry: the old content is untrusted.
	if _, err := s.Trust(a, []byte("y"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if s.Trusted(a, []byte("x")) || !s.Trusted(a, []byte("y")) {
		t.Fatal("re-trust did not replace the entry")
	}
	if list, _ := s.List(); len(list) != 1 {
		t.Fatalf("entries = %+v", list)
	}
	st, err := os.Stat(s.Path())
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("store file mode: %v %v", st, err)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %v", st.Mode())
	}
	if ok, err := s.Revoke(a); !ok || err != nil {
		t.Fatalf("Revoke = %v %v", ok, err)
	}
	if s.Trusted(a, []byte("y")) {
		t.Fatal("revoked entry trusted")
	}
	if err := os.WriteFile(s.Path(), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s.Trusted(a, []byte("y")) {
		t.Fatal("a corrupt store trusts")
	}
}
