package fsx

import (
	"os"
	"path/filepath"
	"testing"
)

// The target appears only on Commit, with the bytes written and the mode
// asked for; until then an older target is untouched. Abort leaves the
// older target and no temporary file.
func TestAtomicFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.bin")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := CreateAtomic(p, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.File.Write([]byte("new\x00bytes")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Fatalf("target changed before Commit: %q", b)
	}
	n, err := a.Commit()
	if err != nil || n != 9 {
		t.Fatalf("Commit: %d, %v", n, err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new\x00bytes" {
		t.Fatalf("target %q", b)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	if _, err := a.Commit(); err == nil {
		t.Error("a second Commit succeeded")
	}

	b, err := CreateAtomic(p, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	b.File.Write([]byte("discarded"))
	b.Abort()
	b.Abort()
	if got, _ := os.ReadFile(p); string(got) != "new\x00bytes" {
		t.Fatalf("Abort changed the target: %q", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

// A target that is a symlink is replaced, never written through.
func TestAtomicFileReplacesSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("keep"), 0o600)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	a, err := CreateAtomic(link, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	a.File.Write([]byte("capture"))
	if _, err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("wrote through the symlink: %q", b)
	}
	if st, _ := os.Lstat(link); st.Mode()&os.ModeSymlink != 0 {
		t.Error("target is still a symlink")
	}
}
