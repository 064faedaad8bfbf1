package syncer

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
)

func fingerprintOf(t testing.TB, o Options) string {
	t.Helper()
	ctx := context.Background()
	m, err := BuildManifest(ctx, execx.OS{}, o)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := Fingerprint(ctx, execx.OS{}, o, m)
	if err != nil {
		t.Fatal(err)
	}
	// A manifest without the cached git snapshot gives the same answer.
	bare := &Manifest{Files: m.Files, Bytes: m.Bytes, Deleted: m.Deleted}
	fp2, err := Fingerprint(ctx, execx.OS{}, o, bare)
	if err != nil {
		t.Fatal(err)
	}
	if fp != fp2 {
		t.Fatalf("fingerprint with snapshot %s != without %s", fp, fp2)
	}
	return fp
}

func TestFingerprint(t *testing.T) {
	repo := newRepo(t)
	write(t, repo, "a.txt", "alpha\n")
	write(t, repo, "dir/b.txt", "bravo\n")
	write(t, repo, ".crabboxignore", "ignored.txt\n")
	if err := os.Symlink("a.txt", filepath.Join(repo, "ln")); err != nil {
		t.Fatal(err)
	}
	commitAll(t, repo)
	write(t, repo, "untracked.txt", "u1\n")
	write(t, repo, "ignored.txt", "i1\n")
	o := testOptions(repo, "/w/l/r")

	base := fingerprintOf(t, o)
	if again := fingerprintOf(t, o); again != base {
		t.Fatalf("unchanged tree: %s then %s", base, again)
	}
	if len(base) != 64 {
		t.Fatalf("fingerprint %q is not hex sha256", base)
	}

	steps := []struct {
		name   string
		change func()
		same   bool
	}{
		{"tracked edit keeping size and mtime", func() { editKeepingStat(t, repo, "a.txt", "ALPHA\n") }, false},
		{"second same-stat edit of a modified file", func() { editKeepingStat(t, repo, "a.txt", "AlPhA\n") }, false},
		{"untracked edit keeping size and mtime", func() { editKeepingStat(t, repo, "untracked.txt", "u2\n") }, false},
		{".crabboxignored file edit", func() { write(t, repo, "ignored.txt", "i2 longer\n") }, true},
		{"touch only", func() {
			p := filepath.Join(repo, "dir/b.txt")
			fi, _ := os.Stat(p)
			os.Chtimes(p, fi.ModTime().Add(-3600e9), fi.ModTime().Add(-3600e9))
		}, true},
		{"chmod +x", func() { os.Chmod(filepath.Join(repo, "dir/b.txt"), 0o755) }, false},
		{"symlink retarget", func() {
			os.Remove(filepath.Join(repo, "ln"))
			os.Symlink("dir/b.txt", filepath.Join(repo, "ln"))
		}, false},
		{"new untracked file", func() { write(t, repo, "new.txt", "n\n") }, false},
		// git add changes no content: whether the fingerprint moves depends
		// on the second the index is written in (files changed in that
		// second are hashed rather than named by blob; see racyClean), so
		// this step only sets up the commit below.
		{"git add (same content)", func() { gitIn(t, repo, "add", "-A") }, false},
		{"commit (same content, new HEAD)", func() { gitIn(t, repo, "commit", "-q", "-m", "x") }, false},
		{"delete a file", func() { os.Remove(filepath.Join(repo, "new.txt")) }, false},
		{"nothing", func() {}, true},
	}
	prev := base
	for _, s := range steps {
		s.change()
		got := fingerprintOf(t, o)
		if s.name != "git add (same content)" && (got == prev) != s.same {
			t.Errorf("%s: fingerprint changed=%v, want changed=%v", s.name, got != prev, !s.same)
		}
		prev = got
	}

	// Settings that change the result change it.
	o2 := o
	o2.Checksum = true
	if fingerprintOf(t, o2) == prev {
		t.Error("checksum setting does not change the fingerprint")
	}
	o3 := o
	o3.Exclude = []string{"nothing-matches"}
	if fingerprintOf(t, o3) == prev {
		t.Error("exclude setting does not change the fingerprint")
	}
}

// A committed file edited right after the commit, same size, mtime put
// back: repeated to catch timing (racy-git) windows.
func TestFingerprintSameStatEditRepeated(t *testing.T) {
	repo := newRepo(t)
	o := testOptions(repo, "/w/l/r")
	for i := range 30 {
		content := []byte("v00\n")
		content[1] += byte(i / 10)
		content[2] += byte(i % 10)
		write(t, repo, "f.txt", string(content))
		commitAll(t, repo)
		before := fingerprintOf(t, o)
		content[0] = 'w'
		editKeepingStat(t, repo, "f.txt", string(content))
		if after := fingerprintOf(t, o); after == before {
			t.Fatalf("round %d: same-size same-mtime edit not detected", i)
		}
	}
}

func TestFingerprintNoCommitsNoOrigin(t *testing.T) {
	repo := newRepo(t)
	write(t, repo, "a.txt", "a\n")
	o := testOptions(repo, "/w/l/r")
	fp1 := fingerprintOf(t, o)
	editKeepingStat(t, repo, "a.txt", "b\n")
	if fingerprintOf(t, o) == fp1 {
		t.Error("untracked edit in a repo without commits not detected")
	}
	gitIn(t, repo, "add", "a.txt") // staged, still no commit
	fp2 := fingerprintOf(t, o)
	editKeepingStat(t, repo, "a.txt", "c\n")
	if fingerprintOf(t, o) == fp2 {
		t.Error("staged-file edit in a repo without commits not detected")
	}
}

func TestFingerprintAssumeUnchanged(t *testing.T) {
	repo := newRepo(t)
	write(t, repo, "a.txt", "a1\n")
	commitAll(t, repo)
	gitIn(t, repo, "update-index", "--assume-unchanged", "a.txt")
	o := testOptions(repo, "/w/l/r")
	fp := fingerprintOf(t, o)
	write(t, repo, "a.txt", "a2\n")
	if fingerprintOf(t, o) == fp {
		t.Error("edit of an assume-unchanged file not detected")
	}
	// Config that would weaken git's stat check is overridden.
	gitIn(t, repo, "update-index", "--no-assume-unchanged", "a.txt")
	gitIn(t, repo, "config", "core.trustctime", "false")
	gitIn(t, repo, "config", "core.checkStat", "minimal")
	gitIn(t, repo, "add", "a.txt")
	fp = fingerprintOf(t, o)
	editKeepingStat(t, repo, "a.txt", "a3\n")
	if fingerprintOf(t, o) == fp {
		t.Error("same-stat edit not detected with core.trustctime=false")
	}
}

// racyClean: a file changed in or after the index's second is hashed,
// an older one is trusted to git; without a ctime git is trusted.
func TestRacyClean(t *testing.T) {
	now := time.Now().Unix()
	for _, tc := range []struct {
		ctime, index int64
		want         bool
	}{
		{100, 100, true},
		{101, 100, true},
		{99, 100, false},
		{0, 100, false},
		{now, -1, true},
		{now - 10, -1, false},
	} {
		if got := racyClean(tc.ctime, tc.index); got != tc.want {
			t.Errorf("racyClean(%d, %d) = %v, want %v", tc.ctime, tc.index, got, tc.want)
		}
	}
}

// The flake this fixes: a staged file edited (same size, mtime put back)
// in the same second git recorded it. Repeated so the same-second case
// is hit; each round must be detected.
func TestFingerprintStagedSameSecondEdit(t *testing.T) {
	repo := newRepo(t)
	o := testOptions(repo, "/w/l/r")
	for i := range 20 {
		content := []byte("s00\n")
		content[1] += byte(i / 10)
		content[2] += byte(i % 10)
		write(t, repo, "a.txt", string(content))
		// An old mtime, so git's own racy-entry check (mtime not before
		// the index) does not catch the edit: only the ctime could.
		old := time.Now().Add(-time.Hour)
		if err := os.Chtimes(filepath.Join(repo, "a.txt"), old, old); err != nil {
			t.Fatal(err)
		}
		gitIn(t, repo, "add", "a.txt")
		before := fingerprintOf(t, o)
		content[0] = 't'
		editKeepingStat(t, repo, "a.txt", string(content))
		if fingerprintOf(t, o) == before {
			t.Fatalf("round %d: staged same-stat edit not detected", i)
		}
	}
}
