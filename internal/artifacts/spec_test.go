package artifacts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/runs"
)

func TestCheckGlob(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"out/*", "out/*", ""},
		{"./cov/**", "cov/**", ""},
		{"a//b/*.txt", "a/b/*.txt", ""},
		{".hidden/*", ".hidden/*", ""},
		{"../x", "", "leaves the remote workdir"},
		{"out/../../x", "", "leaves the remote workdir"},
		{"/etc/*", "", "absolute"},
		{"~/x", "", "absolute"},
		{"", "", "empty"},
		{" ", "", "empty"},
		{".", "", "the workdir itself"},
		{".crabbox/env/*", "", ".crabbox"},
		{"./.crabbox", "", ".crabbox"},
		{"a\nb", "", "control character"},
	} {
		got, err := CheckGlob(tc.in)
		if tc.err == "" {
			if err != nil || got != tc.want {
				t.Errorf("CheckGlob(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("CheckGlob(%q) err %v, want %q", tc.in, err, tc.err)
		}
	}
}

func TestParseDownload(t *testing.T) {
	for _, tc := range []struct {
		in     string
		remote string
		local  string
		err    string
	}{
		{"out/a.bin=a.bin", "out/a.bin", "a.bin", ""},
		{"./dist/x=/tmp/x=y", "dist/x", "/tmp/x=y", ""},
		{"a.bin", "", "", "want REMOTE=LOCAL"},
		{"../a=a", "", "", "leaves the remote workdir"},
		{"/etc/passwd=p", "", "", "absolute"},
		{"out/*=x", "", "", "not a pattern"},
		{"a=", "", "", "empty LOCAL"},
		{"a=dir/", "", "", "must name a file"},
		{"a=.", "", "", "must name a file"},
		{".crabbox/env/x=y", "", "", ".crabbox"},
	} {
		d, err := ParseDownload(tc.in)
		if tc.err == "" {
			if err != nil || d.Remote != tc.remote || d.Local != tc.local {
				t.Errorf("ParseDownload(%q) = %+v, %v", tc.in, d, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) || exitcode.Code(err) != exitcode.Usage {
			t.Errorf("ParseDownload(%q) err %v (exit %d), want %q", tc.in, err, exitcode.Code(err), tc.err)
		}
	}
}

// Extract copies every artifact (0600, dirs 0700), replaces an existing
// file, never writes through a symlink out of the destination, and
// refuses a stored file that no longer matches its manifest entry.
func TestExtract(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "out", "a.bin"), []byte("aaa"))
	writeFile(t, filepath.Join(src, "b.txt"), []byte("bb"))
	manifest := []runs.Artifact{{Path: "out/a.bin", Size: 3, SHA256: sum([]byte("aaa"))}, {Path: "b.txt", Size: 2, SHA256: sum([]byte("bb"))}}
	dest := filepath.Join(t.TempDir(), "x")
	n, err := Extract(src, manifest, dest)
	if err != nil || n != 2 {
		t.Fatalf("extract: %d %v", n, err)
	}
	for _, a := range manifest {
		b, err := os.ReadFile(filepath.Join(dest, a.Path))
		if err != nil || sum(b) != a.SHA256 {
			t.Errorf("%s: %v", a.Path, err)
		}
		if fi, _ := os.Stat(filepath.Join(dest, a.Path)); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", a.Path, fi.Mode())
		}
	}
	if fi, _ := os.Stat(filepath.Join(dest, "out")); fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", fi.Mode())
	}
	// Again: existing files are replaced.
	if _, err := Extract(src, manifest, dest); err != nil {
		t.Errorf("second extract: %v", err)
	}

	// A symlinked directory out of dest is not followed.
	dest2 := t.TempDir()
	elsewhere := t.TempDir()
	if err := os.Symlink(elsewhere, filepath.Join(dest2, "out")); err != nil {
		t.Fatal(err)
	}
	if _, err := Extract(src, manifest, dest2); err == nil {
		t.Error("extract through a symlink out of the destination succeeded")
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
		t.Errorf("wrote through the symlink: %v", entries)
	}

	// A changed file is refused and not written.
	writeFile(t, filepath.Join(src, "b.txt"), []byte("tampered"))
	dest3 := t.TempDir()
	if _, err := Extract(src, manifest, dest3); err == nil || !strings.Contains(err.Error(), "no longer matches") {
		t.Errorf("tampered: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dest3, "b.txt")); err == nil {
		t.Error("the tampered file was written")
	}
	if entries, _ := os.ReadDir(dest3); len(entries) != 1 { // out/ only
		t.Errorf("left behind: %v", entries)
	}

	// An unsafe manifest path is refused.
	if _, err := Extract(src, []runs.Artifact{{Path: "../x"}}, t.TempDir()); err == nil {
		t.Error("unsafe manifest path accepted")
	}
}
