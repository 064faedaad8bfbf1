package syncer

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/execx"
)

func TestRepoName(t *testing.T) {
	ctx := context.Background()
	for url, want := range map[string]string{
		"git@github.com:o/r.git":             "r",
		"https://host/x/y.git":               "y",
		"https://github.com/owner/repo":      "repo",
		"https://github.com/owner/repo.git/": "repo",
		"ssh://git@host:2222/team/proj.git":  "proj",
		"host:plain":                         "plain",
		"/srv/git/my repo.git":               "my-repo",
	} {
		repo := newRepo(t)
		gitIn(t, repo, "remote", "add", "origin", url)
		if got := RepoName(ctx, execx.OS{}, repo); got != want {
			t.Errorf("RepoName(origin %q) = %q, want %q", url, got, want)
		}
	}
	parent := t.TempDir()
	repo := filepath.Join(parent, "local dir")
	if err := os.Mkdir(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	gitIn(t, repo, "init", "-q")
	if got := RepoName(ctx, execx.OS{}, repo); got != "local-dir" {
		t.Errorf("RepoName without origin = %q, want local-dir", got)
	}

	// With a fake runner: the argv, and no origin.
	f := execx.NewFake().On("git -C /x/proj config --get remote.origin.url", execx.Reply{ExitCode: 1})
	if got := RepoName(ctx, f, "/x/proj"); got != "proj" {
		t.Errorf("RepoName fake = %q", got)
	}
	if got := sanitizeName(".."); got != "repo" {
		t.Errorf("sanitizeName(..) = %q", got)
	}
}

func TestWorkdirFor(t *testing.T) {
	if got := WorkdirFor("/home/coder/crabbox", "cbx_0123456789ab", "repo"); got != "/home/coder/crabbox/cbx_0123456789ab/repo" {
		t.Errorf("WorkdirFor = %q", got)
	}
	if got := WorkdirFor("/w/", "cbx_1", "r"); got != "/w/cbx_1/r" {
		t.Errorf("WorkdirFor trailing slash = %q", got)
	}
}

func TestBuildManifest(t *testing.T) {
	repo := newRepo(t)
	write(t, repo, ".gitignore", "*.log\nbuild/\n")
	write(t, repo, "README.md", "hello\n")
	write(t, repo, "src/main.go", "package main\n")
	write(t, repo, "dist/app.js", "tracked dist\n")
	write(t, repo, "gone.txt", "bye\n")
	write(t, repo, "docs/private.md", "x\n")
	if err := os.Symlink("README.md", filepath.Join(repo, "link")); err != nil {
		t.Fatal(err)
	}
	commitAll(t, repo)
	// Untracked, ignored, built-in excluded, protected.
	write(t, repo, "notes.txt", "untracked\n")
	write(t, repo, "debug.log", "ignored\n")
	write(t, repo, "build/out.bin", "ignored\n")
	write(t, repo, "node_modules/x/index.js", "dep\n")
	write(t, repo, "dist/bundle.js", "untracked dist\n")
	write(t, repo, "secret.txt", "s\n")
	write(t, repo, ".crabboxignore", "# comment\nsecret.txt\n")
	write(t, repo, ".crabbox/env/run.env", "X=1\n")
	write(t, repo, ".crabbox/config.yaml", "a: 1\n")
	if err := os.Remove(filepath.Join(repo, "gone.txt")); err != nil {
		t.Fatal(err)
	}
	// A nested repository is skipped, not walked.
	nested := filepath.Join(repo, "vendor/nested")
	if err := os.MkdirAll(nested, 0o755); err != nil {
		t.Fatal(err)
	}
	gitIn(t, nested, "init", "-q")
	write(t, nested, "n.txt", "n\n")

	o := testOptions(repo, "/w/l/r")
	o.Exclude = []string{"docs/private.md"}
	m, err := BuildManifest(context.Background(), execx.OS{}, o)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{".crabbox/config.yaml", ".crabboxignore", ".gitignore", "README.md", "dist/app.js", "link", "notes.txt", "src/main.go"}
	if !slices.Equal(m.Files, want) {
		t.Errorf("Files = %q\nwant    %q", m.Files, want)
	}
	if !slices.Equal(m.Deleted, []string{"gone.txt"}) {
		t.Errorf("Deleted = %q", m.Deleted)
	}
	if !slices.Equal(m.Skipped, []string{"vendor/nested"}) {
		t.Errorf("Skipped = %q", m.Skipped)
	}
	var size int64
	for _, f := range want {
		fi, err := os.Lstat(filepath.Join(repo, f))
		if err != nil {
			t.Fatal(err)
		}
		size += fi.Size()
	}
	if m.Bytes != size {
		t.Errorf("Bytes = %d, want %d", m.Bytes, size)
	}
}

func TestBuildManifestNoCommitsAndErrors(t *testing.T) {
	repo := newRepo(t)
	write(t, repo, "a.txt", "a\n")
	write(t, repo, "b.txt", "b\n")
	gitIn(t, repo, "add", "a.txt")
	m, err := BuildManifest(context.Background(), execx.OS{}, testOptions(repo, "/w/l/r"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Files, []string{"a.txt", "b.txt"}) || m.snap.head != "none" {
		t.Errorf("Files = %q head = %q", m.Files, m.snap.head)
	}
	if _, err := BuildManifest(context.Background(), execx.OS{}, testOptions(t.TempDir(), "/w/l/r")); err == nil {
		t.Error("no error outside a git repository")
	}
}

func TestBuildManifestSparseCheckoutStops(t *testing.T) {
	repo := newRepo(t)
	write(t, repo, "keep/a.txt", "a\n")
	write(t, repo, "away/b.txt", "b\n")
	commitAll(t, repo)
	gitIn(t, repo, "sparse-checkout", "set", "keep")
	if _, err := os.Stat(filepath.Join(repo, "away/b.txt")); err == nil {
		t.Skip("sparse-checkout did not remove the file") // very old git
	}
	_, err := BuildManifest(context.Background(), execx.OS{}, testOptions(repo, "/w/l/r"))
	if err == nil || !strings.Contains(err.Error(), "sparse checkout") {
		t.Fatalf("err = %v, want a sparse checkout error", err)
	}
	// Excluding the sparse part makes it fine.
	o := testOptions(repo, "/w/l/r")
	o.Exclude = []string{"away"}
	if m, err := BuildManifest(context.Background(), execx.OS{}, o); err != nil || !slices.Equal(m.Files, []string{"keep/a.txt"}) {
		t.Fatalf("with exclude: %v %v", m, err)
	}
}

func TestParseLsFiles(t *testing.T) {
	out := "? new file\x00" +
		"H 100644 aaaa 0\ta\x00" +
		"C 100644 bbbb 0\tb\x00H 100644 bbbb 0\tb\x00" +
		"h 100755 cccc 0\tc\x00" +
		"S 100644 dddd 0\td\x00" +
		"M 100644 e1 1\te\x00M 100644 e2 2\te\x00" +
		"H 120000 ffff 0\tl\tx\x00"
	s, err := parseLsFiles([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.untracked, []string{"new file"}) {
		t.Errorf("untracked = %q", s.untracked)
	}
	check := func(p string, mode uint32, blob string, dirty, skip bool) {
		e := s.index[p]
		if e == nil || e.mode != mode || e.blob != blob || e.dirty != dirty || e.skipWorktree != skip {
			t.Errorf("%s = %+v", p, e)
		}
	}
	check("a", 0o100644, "aaaa", false, false)
	check("b", 0o100644, "bbbb", true, false)
	check("c", 0o100755, "cccc", true, false)
	check("d", 0o100644, "dddd", true, true)
	check("e", 0o100644, "", true, false)
	check("l\tx", 0o120000, "ffff", false, false)
	if _, err := parseLsFiles([]byte("garbage\x00")); err == nil {
		t.Error("no error for garbage")
	}
}
