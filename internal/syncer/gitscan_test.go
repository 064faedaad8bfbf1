package syncer

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
)

// scanBoth builds the manifest with the fast scan and with the ls-files
// scan; they must agree on what is sent, deleted and skipped.
func scanBoth(t *testing.T, o Options) (fast, legacy *Manifest) {
	t.Helper()
	ctx := context.Background()
	var err error
	if fast, err = BuildManifest(ctx, execx.OS{}, o); err != nil {
		t.Fatal(err)
	}
	fastScan = false
	defer func() { fastScan = true }()
	if legacy, err = BuildManifest(ctx, execx.OS{}, o); err != nil {
		t.Fatal(err)
	}
	if legacy.snap.fast {
		t.Fatal("ls-files scan reported itself as fast")
	}
	if !slices.Equal(fast.Files, legacy.Files) || !slices.Equal(fast.Deleted, legacy.Deleted) ||
		!slices.Equal(fast.Skipped, legacy.Skipped) || fast.Bytes != legacy.Bytes || fast.snap.head != legacy.snap.head {
		t.Fatalf("fast scan differs from ls-files:\nfast   %q %q %q %d %s\nlsfile %q %q %q %d %s",
			fast.Files, fast.Deleted, fast.Skipped, fast.Bytes, fast.snap.head,
			legacy.Files, legacy.Deleted, legacy.Skipped, legacy.Bytes, legacy.snap.head)
	}
	return fast, legacy
}

// An awkward tree, in every index version: the fast scan's manifest is
// the ls-files one, and it ran one git process.
func TestFastScanMatchesLsFiles(t *testing.T) {
	for _, version := range []string{"2", "3", "4"} {
		t.Run("index-v"+version, func(t *testing.T) {
			repo := newRepo(t)
			write(t, repo, ".gitignore", "*.log\nbuild/\n")
			write(t, repo, "a.txt", "alpha\n")
			write(t, repo, "dir with space/b c.txt", "b\n")
			write(t, repo, "#hash;semi", "odd\n")
			write(t, repo, "new\nline", "nl\n")
			write(t, repo, "ünï/côdé.txt", "u\n")
			write(t, repo, "run.sh", "#!/bin/sh\n")
			write(t, repo, "tracked.log", "tracked though ignored\n")
			write(t, repo, "empty", "")
			write(t, repo, "gone.txt", "g\n")
			write(t, repo, "staged.txt", "s1\n")
			write(t, repo, "typechange", "file\n")
			os.Chmod(filepath.Join(repo, "run.sh"), 0o755)
			if err := os.Symlink("a.txt", filepath.Join(repo, "ln")); err != nil {
				t.Fatal(err)
			}
			gitIn(t, repo, "add", "-A")
			gitIn(t, repo, "add", "-f", "tracked.log")
			// A gitlink (submodule entry) without a checkout.
			gitIn(t, repo, "update-index", "--add", "--cacheinfo", "160000,1111111111111111111111111111111111111111,sub")
			gitIn(t, repo, "commit", "-q", "-m", "c")
			gitIn(t, repo, "update-index", "--index-version", version)
			// Changes of every kind.
			write(t, repo, "a.txt", "ALPHA!\n")
			write(t, repo, "staged.txt", "s2\n")
			gitIn(t, repo, "add", "staged.txt")
			os.Remove(filepath.Join(repo, "gone.txt"))
			os.Remove(filepath.Join(repo, "typechange"))
			os.Symlink("a.txt", filepath.Join(repo, "typechange"))
			write(t, repo, "untracked.txt", "u\n")
			write(t, repo, "deep/er/u.txt", "u\n")
			write(t, repo, "debug.log", "ignored\n")
			write(t, repo, "build/x", "ignored\n")
			write(t, repo, "itoa.txt", "intent\n")
			gitIn(t, repo, "add", "-N", "itoa.txt")
			nested := filepath.Join(repo, "vendor/nested")
			os.MkdirAll(nested, 0o755)
			gitIn(t, nested, "init", "-q")
			write(t, nested, "n.txt", "n\n")

			o := testOptions(repo, "/w/l/r")
			cr := newCounting()
			m, err := BuildManifest(context.Background(), cr, o)
			if err != nil {
				t.Fatal(err)
			}
			if !m.snap.fast || cr.count("git") != 1 {
				t.Fatalf("fast=%v git processes=%d, want the fast scan with one", m.snap.fast, cr.count("git"))
			}
			fast, _ := scanBoth(t, o)
			for _, want := range []string{"#hash;semi", "new\nline", "ünï/côdé.txt", "tracked.log", "empty", "ln", "typechange", "untracked.txt", "deep/er/u.txt", "itoa.txt"} {
				if !slices.Contains(fast.Files, want) {
					t.Errorf("%q missing from %q", want, fast.Files)
				}
			}
			if !slices.Equal(fast.Deleted, []string{"gone.txt"}) || !slices.Equal(fast.Skipped, []string{"sub", "vendor/nested"}) {
				t.Errorf("Deleted %q Skipped %q", fast.Deleted, fast.Skipped)
			}
			// What git reported or never checks is hashed; the rest is clean.
			for p, wantClean := range map[string]bool{"a.txt": false, "staged.txt": true, "typechange": false, "itoa.txt": false, "ln": true, "run.sh": true} {
				if e := fast.snap.entry(p); e == nil || e.clean != wantClean {
					t.Errorf("%s: entry %+v, want clean=%v", p, e, wantClean)
				}
			}
		})
	}
}

// An index the reader does not take apart (split index) falls back to
// the ls-files scan, which gives the same manifest.
func TestFastScanSplitIndexFallsBack(t *testing.T) {
	repo := newRepo(t)
	write(t, repo, "a.txt", "a\n")
	write(t, repo, "b.txt", "b\n")
	commitAll(t, repo)
	gitIn(t, repo, "update-index", "--split-index")
	write(t, repo, "a.txt", "A\n")
	fast, _ := scanBoth(t, testOptions(repo, "/w/l/r"))
	if fast.snap.fast {
		t.Error("a split index was read by the fast scan")
	}
	// Positive control: without the split index the fast scan reads it.
	gitIn(t, repo, "update-index", "--no-split-index")
	if fast, _ = scanBoth(t, testOptions(repo, "/w/l/r")); !fast.snap.fast {
		t.Error("a plain index was not read by the fast scan")
	}
}

// After every file's stat data went stale (a checkout, a copy, touch), git
// compares contents: nothing clean is reported modified, an edit among them
// is, and the scan never rewrites the index.
func TestFastScanStaleStatData(t *testing.T) {
	repo := newRepo(t)
	for _, f := range []string{"a.txt", "b.txt", "c.txt"} {
		write(t, repo, f, f+"\n")
	}
	commitAll(t, repo)
	o := testOptions(repo, "/w/l/r")
	fp := fingerprintOf(t, o)
	for _, f := range []string{"a.txt", "b.txt", "c.txt"} {
		p := filepath.Join(repo, f)
		fi, _ := os.Stat(p)
		os.Chtimes(p, fi.ModTime().Add(-7200e9), fi.ModTime().Add(-7200e9))
	}
	ipath := filepath.Join(repo, ".git", "index")
	before, _ := os.Stat(ipath)
	if got := fingerprintOf(t, o); got != fp {
		t.Error("touching files changed the fingerprint")
	}
	editKeepingStat(t, repo, "b.txt", "B.txt\n")
	if got := fingerprintOf(t, o); got == fp {
		t.Error("an edit among stat-stale files was not detected")
	}
	if after, _ := os.Stat(ipath); stampOf(after) != stampOf(before) {
		t.Error("the scan rewrote the index")
	}
}

// Files git never looks at (assume-unchanged, skip-worktree) are hashed:
// a hostile checkout cannot hide an edit that way.
func TestFastScanHiddenEntriesHashed(t *testing.T) {
	for _, flag := range []string{"--assume-unchanged", "--skip-worktree"} {
		t.Run(flag, func(t *testing.T) {
			repo := newRepo(t)
			write(t, repo, "a.txt", "a1\n")
			write(t, repo, "b.txt", "b1\n")
			commitAll(t, repo)
			gitIn(t, repo, "update-index", flag, "a.txt")
			// An index newer than every file: no entry is racily clean, so
			// only the flag can make the scan look at a.txt.
			future := time.Now().Add(time.Hour)
			os.Chtimes(filepath.Join(repo, ".git", "index"), future, future)
			o := testOptions(repo, "/w/l/r")
			fp := fingerprintOf(t, o)
			// Control: git itself does not report the edit.
			write(t, repo, "a.txt", "a2 longer\n")
			if out := gitIn(t, repo, "status", "--porcelain"); strings.Contains(out, "a.txt") {
				t.Fatalf("git reports the hidden file: %q", out)
			}
			if fingerprintOf(t, o) == fp {
				t.Errorf("edit of a %s file not detected", flag)
			}
		})
	}
}

// A repository whose config would run a program or weaken the check
// (fsmonitor hook, untracked cache, no exec bit) changes nothing.
func TestFastScanHostileConfig(t *testing.T) {
	repo := newRepo(t)
	write(t, repo, "a.txt", "a\n")
	commitAll(t, repo)
	marker := filepath.Join(t.TempDir(), "ran")
	hook := filepath.Join(t.TempDir(), "hook.sh")
	os.WriteFile(hook, []byte("#!/bin/sh\ntouch "+marker+"\necho /\n"), 0o755)
	gitIn(t, repo, "config", "core.fsmonitor", hook)
	gitIn(t, repo, "config", "core.untrackedCache", "true")
	gitIn(t, repo, "config", "core.fileMode", "false")
	o := testOptions(repo, "/w/l/r")
	fp := fingerprintOf(t, o)
	os.Chmod(filepath.Join(repo, "a.txt"), 0o755)
	if fingerprintOf(t, o) == fp {
		t.Error("chmod +x not detected with core.fileMode=false")
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the repository's core.fsmonitor program ran")
	}
	// Control: plain git runs it.
	gitIn(t, repo, "status")
	if _, err := os.Stat(marker); err != nil {
		t.Skip("this git does not run core.fsmonitor hooks")
	}
}

// An index rewritten while git status ran is read again.
func TestFastScanIndexChangedRetries(t *testing.T) {
	repo := newRepo(t)
	write(t, repo, "a.txt", "a\n")
	commitAll(t, repo)
	rewrites := 0
	r := &hookRunner{Runner: execx.OS{}, after: func(c execx.Cmd) {
		if rewrites == 0 {
			rewrites++
			write(t, repo, "a.txt", "b\n")
			gitIn(t, repo, "add", "a.txt")
		}
	}}
	m, err := BuildManifest(context.Background(), r, testOptions(repo, "/w/l/r"))
	if err != nil {
		t.Fatal(err)
	}
	if r.calls != 2 || !m.snap.fast {
		t.Errorf("git ran %d times (fast=%v), want 2: once more after the index changed", r.calls, m.snap.fast)
	}
	if e := m.snap.entry("a.txt"); e == nil || !e.clean || e.blob != strings.TrimSpace(gitIn(t, repo, "rev-parse", ":a.txt")) {
		t.Errorf("a.txt entry %+v is not the new index's", e)
	}
}

type hookRunner struct {
	execx.Runner
	calls int
	after func(execx.Cmd)
}

func (h *hookRunner) Run(ctx context.Context, c execx.Cmd) (execx.Result, error) {
	h.calls++
	res, err := h.Runner.Run(ctx, c)
	h.after(c)
	return res, err
}

func TestParseStatus(t *testing.T) {
	h := strings.Repeat("a", 40)
	out := "# branch.oid " + h + "\x00# branch.head main\x00" +
		"1 .M N... 100644 100644 100644 " + h + " " + h + " mod ified\x00" +
		"1 M. N... 100644 100644 100644 " + h + " " + h + " staged\x00" +
		"2 R. N... 100644 100644 100644 " + h + " " + h + " R100 new\x00old\x00" +
		"u UU N... 100644 100644 100644 100644 " + h + " " + h + " " + h + " conflict\x00" +
		"? new\nline\x00! ign\x00"
	st, err := parseStatus([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if st.head != h || !st.dirty["mod ified"] || st.dirty["staged"] || st.dirty["new"] || !st.dirty["conflict"] || st.dirty["old"] {
		t.Errorf("status = %+v", st)
	}
	if !slices.Equal(st.untracked, []string{"new\nline"}) {
		t.Errorf("untracked = %q", st.untracked)
	}
	if st, err := parseStatus([]byte("# branch.oid (initial)\x00")); err != nil || st.head != "none" {
		t.Errorf("initial: %+v %v", st, err)
	}
	for _, bad := range []string{"garbage\x00", "1 .M short\x00", "# branch.head x\x00"} {
		if _, err := parseStatus([]byte(bad)); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
}

func TestParseIndexRejectsDamage(t *testing.T) {
	repo := newRepo(t)
	write(t, repo, "a.txt", "a\n")
	write(t, repo, "b/c.txt", "c\n")
	gitIn(t, repo, "add", "-A")
	data, err := os.ReadFile(filepath.Join(repo, ".git", "index"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := parseIndex(data, 20)
	if err != nil || len(recs) != 2 || recs[0].path != "a.txt" || recs[1].path != "b/c.txt" || recs[0].size != 2 {
		t.Fatalf("parseIndex = %+v, %v", recs, err)
	}
	for name, d := range map[string][]byte{
		"truncated": data[:40],
		"signature": append([]byte("XXXX"), data[4:]...),
		"version":   append([]byte("DIRC\x00\x00\x00\x09"), data[8:]...),
	} {
		if _, err := parseIndex(d, 20); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
