package syncer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

func TestGuardsRunBeforeAnyRemoteCall(t *testing.T) {
	repo := newRepo(t)
	for i := range 210 {
		write(t, repo, fmt.Sprintf("f/%03d.txt", i), "x\n")
	}
	write(t, repo, "keep.txt", "k\n")
	commitAll(t, repo)
	if err := os.RemoveAll(filepath.Join(repo, "f")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	workdir := filepath.Join(t.TempDir(), "l", "r")

	rem := newLocalRemote(t)
	runner := newCounting()
	_, err := Sync(ctx, runner, rem, testOptions(repo, workdir), nil)
	if exitcode.Code(err) != exitcode.Sync || !strings.Contains(err.Error(), "CRABBOX_ALLOW_MASS_DELETIONS=1") || !strings.Contains(err.Error(), "210 tracked files") {
		t.Fatalf("mass deletion: err = %v (code %d)", err, exitcode.Code(err))
	}
	if rem.runs.Load() != 0 || runner.count("rsync") != 0 {
		t.Fatalf("remote used before the mass-deletion guard: runs=%d rsync=%d", rem.runs.Load(), runner.count("rsync"))
	}

	// Large-sync guard: fail unless allowed; warn above the warn limits.
	repo2 := newRepo(t)
	for i := range 5 {
		write(t, repo2, fmt.Sprintf("d%d/f.txt", i), strings.Repeat("x", 100*(i+1)))
	}
	o := testOptions(repo2, workdir)
	o.FailFiles = 4
	_, err = Sync(ctx, runner, rem, o, nil)
	if exitcode.Code(err) != exitcode.Sync || !strings.Contains(err.Error(), "--force-sync-large") || !strings.Contains(err.Error(), "d4/ 500 B (1 files)") {
		t.Fatalf("large sync: err = %v", err)
	}
	o.FailFiles, o.FailBytes = 0, 1000
	if _, err = Sync(ctx, runner, rem, o, nil); exitcode.Code(err) != exitcode.Sync {
		t.Fatalf("large bytes: err = %v", err)
	}
	if rem.runs.Load() != 0 || runner.count("rsync") != 0 {
		t.Fatalf("remote used before the large-sync guard")
	}
	o.AllowLarge = true
	o.WarnFiles = 2
	var ev events
	if _, err = Sync(ctx, runner, rem, o, ev.report); err != nil {
		t.Fatalf("allowLarge: %v", err)
	}
	if w, ok := ev.find("warning", "sync warning: large sync candidate: 5 files, 1.5 KiB"); !ok || !strings.Contains(w.Message, "largest dirs: d4/ 500 B") {
		t.Errorf("no large-sync warning: %q", ev.messages())
	}
}

func TestValidateWorkdir(t *testing.T) {
	repo := newRepo(t)
	rem := newLocalRemote(t)
	for _, wd := range []string{"", "relative/x", "/", "/one", "/a/../b", "/a/b c", "/a/$(x)", "/a/b/"} {
		o := testOptions(repo, wd)
		_, err := Sync(context.Background(), execx.OS{}, rem, o, nil)
		if exitcode.Code(err) != exitcode.Sync {
			t.Errorf("workdir %q: err = %v", wd, err)
		}
	}
	if rem.runs.Load() != 0 {
		t.Error("remote used with an invalid workdir")
	}
}

// TestSyncEndToEnd runs real git, real rsync and the real remote scripts
// (through bash, as sshd would run them) against a local directory.
func TestSyncEndToEnd(t *testing.T) {
	ctx := context.Background()
	repo := newRepo(t)
	weird := []string{
		`weird dir/it's "q" $(touch PWNED) ` + "`touch PWNED2`.txt",
		"-leading dash.txt",
		"ünïcødé ✓/naïve.txt",
		"tab\there.txt",
		"new\nline.txt",
		"star*?[x].txt",
		"@/at.txt",
		// rsync's --files-from reads these as comments unless prefixed.
		"#top.txt", ";semi.txt", "#dir/x.txt", "#dir/#y", ";dir/z", "--rsh=x", "-e",
	}
	write(t, repo, ".gitignore", "*.log\nbuild/\n")
	write(t, repo, "README.md", "hello\n")
	write(t, repo, "src/main.go", "package main\n")
	write(t, repo, "dist/app.js", "tracked dist\n")
	write(t, repo, "deep/a/b/only.txt", "deep\n")
	write(t, repo, "exec.sh", "#!/bin/sh\necho hi\n")
	os.Chmod(filepath.Join(repo, "exec.sh"), 0o755)
	if err := os.Symlink("README.md", filepath.Join(repo, "link")); err != nil {
		t.Fatal(err)
	}
	for i, w := range weird {
		write(t, repo, w, fmt.Sprintf("weird %d\n", i))
	}
	commitAll(t, repo)
	write(t, repo, "notes.txt", "untracked\n")
	write(t, repo, "untracked weird '$(x)'.txt", "u\n")
	write(t, repo, "debug.log", "ignored\n")
	write(t, repo, "build/out.bin", "ignored\n")
	write(t, repo, "node_modules/x/index.js", "dep\n")
	write(t, repo, "dist/bundle.js", "untracked dist\n")
	write(t, repo, ".crabboxignore", "secret.txt\n")
	write(t, repo, "secret.txt", "s\n")
	write(t, repo, ".crabbox/env/run.env", "X=1\n")

	root := t.TempDir()
	workdir := filepath.Join(root, "cbx_0123456789ab", "repo")
	rem := newLocalRemote(t)
	runner := newCounting()
	o := testOptions(repo, workdir)

	wantTree := func() map[string]string {
		want := map[string]string{
			".gitignore":                 "*.log\nbuild/\n",
			".crabboxignore":             "secret.txt\n",
			"README.md":                  "hello\n",
			"src/main.go":                "package main\n",
			"dist/app.js":                "tracked dist\n",
			"deep/a/b/only.txt":          "deep\n",
			"exec.sh":                    "#!/bin/sh\necho hi\n",
			"link":                       "-> README.md",
			"notes.txt":                  "untracked\n",
			"untracked weird '$(x)'.txt": "u\n",
		}
		for i, w := range weird {
			want[w] = fmt.Sprintf("weird %d\n", i)
		}
		return want
	}()
	checkTree := func(step string, want map[string]string) {
		t.Helper()
		got := remoteTree(t, workdir)
		if !maps.Equal(got, want) {
			var extra, missing, diff []string
			for k, v := range got {
				if w, ok := want[k]; !ok {
					extra = append(extra, k)
				} else if w != v {
					diff = append(diff, k)
				}
			}
			for k := range want {
				if _, ok := got[k]; !ok {
					missing = append(missing, k)
				}
			}
			t.Fatalf("%s: remote tree differs: extra %q missing %q content %q", step, extra, missing, diff)
		}
	}
	meta := filepath.Join(workdir, ".crabbox", "sync")
	exists := func(p string) bool { _, err := os.Lstat(p); return err == nil }

	// 1. First sync copies everything in scope.
	var ev events
	res, err := Sync(ctx, runner, rem, o, ev.report)
	if err != nil {
		t.Fatalf("first sync: %v\n%q", err, ev.messages())
	}
	checkTree("first sync", wantTree)
	if res.Skipped || res.Files != len(wantTree) || runner.count("rsync") != 1 || rem.runs.Load() != 2 {
		t.Fatalf("first sync: %+v rsync=%d remote runs=%d", res, runner.count("rsync"), rem.runs.Load())
	}
	if fi, err := os.Stat(filepath.Join(workdir, "exec.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("exec.sh mode = %v, %v", fi.Mode(), err)
	}
	var names []string
	for _, p := range res.Phases {
		names = append(names, p.Name)
		if p.Skipped {
			t.Errorf("phase %s skipped on first sync", p.Name)
		}
	}
	if !slices.Equal(names, []string{"manifest", "fingerprint", "prepare", "rsync", "finalize"}) {
		t.Errorf("phases = %q", names)
	}
	if _, ok := ev.find("candidate", fmt.Sprintf("sync candidate: %d files, ", len(wantTree))); !ok {
		t.Errorf("no candidate event: %q", ev.messages())
	}
	if _, ok := ev.find("complete", "sync complete in "); !ok {
		t.Errorf("no complete event: %q", ev.messages())
	}
	if !exists(filepath.Join(meta, "fingerprint")) || !exists(filepath.Join(meta, "manifest")) || exists(filepath.Join(meta, "manifest.pending")) {
		t.Fatal("metadata not finalized")
	}
	for _, p := range []string{"PWNED", "PWNED2"} {
		if exists(filepath.Join(repo, p)) || exists(filepath.Join(workdir, p)) || exists(p) {
			t.Fatalf("a file name was executed: %s exists", p)
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(meta, "*.*"))
	for _, l := range leftovers {
		if !strings.HasSuffix(l, ".pending") {
			t.Errorf("temporary file left in metadata dir: %s", l)
		}
	}

	// 2. No change: one round trip, no rsync.
	ev = events{}
	res, err = Sync(ctx, runner, rem, o, ev.report)
	if err != nil || !res.Skipped {
		t.Fatalf("second sync: %+v %v", res, err)
	}
	if runner.count("rsync") != 1 || rem.runs.Load() != 3 {
		t.Fatalf("unchanged sync ran rsync=%d remote runs=%d (want 1, 3)", runner.count("rsync"), rem.runs.Load())
	}
	if _, ok := ev.find("skip", "No changes detected, skipping sync ("); !ok {
		t.Errorf("no skip event: %q", ev.messages())
	}
	if p := res.Phases[len(res.Phases)-1]; p.Name != "finalize" || !p.Skipped || p.Reason != "no changes" {
		t.Errorf("last phase = %+v", p)
	}

	// 3. Edits that keep size and mtime, tracked and untracked, reach the remote.
	editKeepingStat(t, repo, "README.md", "HELLO\n")
	editKeepingStat(t, repo, "notes.txt", "UNTRACKED\n")
	wantTree["README.md"], wantTree["notes.txt"] = "HELLO\n", "UNTRACKED\n"
	if res, err = Sync(ctx, runner, rem, o, nil); err != nil || res.Skipped {
		t.Fatalf("sync after same-stat edit: %+v %v", res, err)
	}
	checkTree("same-stat edit", wantTree)
	// A second same-stat edit of the now-modified file as well.
	editKeepingStat(t, repo, "README.md", "HeLLo\n")
	wantTree["README.md"] = "HeLLo\n"
	if _, err = Sync(ctx, runner, rem, o, nil); err != nil {
		t.Fatal(err)
	}
	checkTree("second same-stat edit", wantTree)

	// 4. Deletions prune; remote-only files survive; emptied dirs go.
	write(t, workdir, "user-notes.txt", "made on the remote\n")
	write(t, workdir, "src/user.txt", "made on the remote\n")
	write(t, workdir, "deep/a/user-made/x.txt", "made on the remote\n")
	for _, p := range []string{"src/main.go", "deep/a/b/only.txt", weird[0], weird[1], weird[4], "untracked weird '$(x)'.txt", "link"} {
		if err := os.Remove(filepath.Join(repo, p)); err != nil {
			t.Fatal(err)
		}
		delete(wantTree, p)
	}
	wantTree["user-notes.txt"] = "made on the remote\n"
	wantTree["src/user.txt"] = "made on the remote\n"
	wantTree["deep/a/user-made/x.txt"] = "made on the remote\n"
	res, err = Sync(ctx, runner, rem, o, nil)
	if err != nil || res.Pruned != 7 {
		t.Fatalf("sync after deletions: %+v %v", res, err)
	}
	checkTree("deletions", wantTree)
	if exists(filepath.Join(workdir, "deep/a/b")) || exists(filepath.Join(workdir, "weird dir")) {
		t.Error("emptied directories were not removed")
	}
	if !exists(filepath.Join(workdir, "deep/a/user-made")) {
		t.Error("a non-empty directory was removed")
	}

	// 5. Delete off: files stay remotely, and a later delete-on sync prunes them.
	o2 := o
	o2.Delete = false
	os.Remove(filepath.Join(repo, "notes.txt"))
	if _, err = Sync(ctx, runner, rem, o2, nil); err != nil {
		t.Fatal(err)
	}
	checkTree("delete off", wantTree)
	delete(wantTree, "notes.txt")
	if res, err = Sync(ctx, runner, rem, o, nil); err != nil || res.Pruned != 1 {
		t.Fatalf("delete on again: %+v %v", res, err)
	}
	checkTree("delete on again", wantTree)

	// 6. An interrupted sync (rsync fails after prepare) leaves no
	// fingerprint, so the next sync runs rsync again.
	write(t, repo, "src/new.go", "package main // new\n")
	wantTree["src/new.go"] = "package main // new\n"
	runner.fail = func(c execx.Cmd) (execx.Result, error) {
		return execx.Result{Stderr: []byte("rsync: connection unexpectedly closed\n"), ExitCode: 12},
			&execx.ExitError{Cmd: c.String(), Code: 12}
	}
	_, err = Sync(ctx, runner, rem, o, nil)
	runner.fail = nil
	if exitcode.Code(err) != exitcode.Transport || !strings.Contains(err.Error(), "connection unexpectedly closed") {
		t.Fatalf("failing rsync: err = %v", err)
	}
	if exists(filepath.Join(meta, "fingerprint")) {
		t.Fatal("fingerprint left after an interrupted sync")
	}
	before := runner.count("rsync")
	if res, err = Sync(ctx, runner, rem, o, nil); err != nil || res.Skipped || runner.count("rsync") != before+1 {
		t.Fatalf("sync after interruption: %+v %v", res, err)
	}
	checkTree("after interruption", wantTree)

	// 7. Full resync wipes remote-only files and is never skipped.
	o3 := o
	o3.FullResync = true
	if res, err = Sync(ctx, runner, rem, o3, nil); err != nil || res.Skipped {
		t.Fatalf("full resync: %+v %v", res, err)
	}
	for _, p := range []string{"user-notes.txt", "src/user.txt", "deep/a/user-made/x.txt"} {
		delete(wantTree, p)
	}
	checkTree("full resync", wantTree)
	if res, err = Sync(ctx, runner, rem, o, nil); err != nil || !res.Skipped {
		t.Fatalf("sync after full resync: %+v %v", res, err)
	}

	// 8. Fingerprint disabled: never skips, still correct.
	o4 := o
	o4.Fingerprint = false
	if res, err = Sync(ctx, runner, rem, o4, nil); err != nil || res.Skipped {
		t.Fatalf("fingerprint off: %+v %v", res, err)
	}
	checkTree("fingerprint off", wantTree)
}

// TestPruneRefusesUnsafePaths plants a hostile old manifest and checks
// that the prune touches nothing outside the workdir or through symlinks.
func TestPruneRefusesUnsafePaths(t *testing.T) {
	ctx := context.Background()
	repo := newRepo(t)
	write(t, repo, "a.txt", "a\n")
	commitAll(t, repo)
	root := t.TempDir()
	workdir := filepath.Join(root, "lease", "repo")
	outside := filepath.Join(root, "outside")
	write(t, outside, "victim.txt", "keep\n")
	write(t, workdir, "linkdir-target-keep.txt", "keep\n")
	if err := os.Symlink(outside, filepath.Join(workdir, "linkdir")); err != nil {
		t.Fatal(err)
	}
	write(t, workdir, ".crabbox/env/run.env", "keep\n")
	write(t, workdir, "stale.txt", "remove me\n")
	hostile := []string{"../outside/victim.txt", "/" + filepath.ToSlash(outside) + "/victim.txt", "linkdir/victim.txt",
		"./stale.txt", "x//y", ".crabbox/env/run.env", ".CRABBOX/env/run.env", "stale.txt", "dir-not-there/x"}
	var b strings.Builder
	for _, h := range hostile {
		b.WriteString(h + "\x00")
	}
	write(t, workdir, ".crabbox/sync/manifest", b.String())

	rem := newLocalRemote(t)
	res, err := Sync(ctx, newCounting(), rem, testOptions(repo, workdir), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Pruned != 1 {
		t.Errorf("pruned %d, want 1 (stale.txt only)", res.Pruned)
	}
	for _, p := range []string{filepath.Join(outside, "victim.txt"), filepath.Join(workdir, ".crabbox/env/run.env"), filepath.Join(workdir, "linkdir-target-keep.txt")} {
		if read(t, p) != "keep\n" {
			t.Errorf("%s changed", p)
		}
	}
	if _, err := os.Stat(filepath.Join(workdir, "stale.txt")); !os.IsNotExist(err) {
		t.Error("stale.txt not pruned")
	}
}

// TestPrepareSetDifferenceAtScale: thousands of paths, a few removed,
// through the real remote script.
func TestPrepareSetDifferenceAtScale(t *testing.T) {
	ctx := context.Background()
	repo := newRepo(t)
	for i := range 3000 {
		write(t, repo, fmt.Sprintf("d%02d/f %04d.txt", i%37, i), "x")
	}
	commitAll(t, repo)
	workdir := filepath.Join(t.TempDir(), "l", "repo")
	rem := newLocalRemote(t)
	o := testOptions(repo, workdir)
	o.AllowMassDeletions = true
	if _, err := Sync(ctx, execx.OS{}, rem, o, nil); err != nil {
		t.Fatal(err)
	}
	var removed []string
	for i := 0; i < 3000; i += 7 {
		p := fmt.Sprintf("d%02d/f %04d.txt", i%37, i)
		removed = append(removed, p)
		os.Remove(filepath.Join(repo, p))
	}
	res, err := Sync(ctx, execx.OS{}, rem, o, nil)
	if err != nil || res.Pruned != len(removed) || res.Files != 3000-len(removed) || res.Duration <= 0 {
		t.Fatalf("%+v %v (removed %d)", res, err, len(removed))
	}
	if got := len(remoteTree(t, workdir)); got != 3000-len(removed) {
		t.Fatalf("remote has %d files, want %d", got, 3000-len(removed))
	}
}

func TestRsyncTimeoutAndTransportErrors(t *testing.T) {
	ctx := context.Background()
	repo := newRepo(t)
	write(t, repo, "a.txt", "a\n")
	commitAll(t, repo)
	workdir := filepath.Join(t.TempDir(), "l", "repo")
	rem := newLocalRemote(t)
	runner := newCounting()
	runner.fail = func(c execx.Cmd) (execx.Result, error) {
		if c.Timeout != 3*time.Second {
			t.Errorf("rsync timeout = %v", c.Timeout)
		}
		return execx.Result{ExitCode: -1}, &execx.TimeoutError{Cmd: c.String(), Timeout: c.Timeout}
	}
	o := testOptions(repo, workdir)
	o.Timeout = 3 * time.Second
	_, err := Sync(ctx, runner, rem, o, nil)
	if exitcode.Code(err) != exitcode.Sync || !strings.Contains(err.Error(), "rsync timed out after 3s; next_action=retry with --full-resync") {
		t.Fatalf("timeout: %v", err)
	}

	// A transport failure keeps its own exit code (7).
	rem.hook = func(string) error { return exitcode.Errorf(exitcode.Transport, "ssh transport to h failed") }
	_, err = Sync(ctx, newCounting(), rem, o, nil)
	if exitcode.Code(err) != exitcode.Transport {
		t.Fatalf("transport: %v", err)
	}
	// A failing remote script is exit 6 with its stderr.
	rem.hook = nil
	o.Workdir = "/proc/crabbox-cannot-write"
	_, err = Sync(ctx, newCounting(), rem, o, nil)
	if exitcode.Code(err) != exitcode.Sync || !strings.Contains(err.Error(), "prepare step failed") {
		t.Fatalf("prepare failure: %v", err)
	}
	var ee *exitcode.Error
	if !errors.As(err, &ee) {
		t.Fatal("not an exitcode error")
	}
}

func TestHeartbeat(t *testing.T) {
	old := heartbeatEvery
	heartbeatEvery = 20 * time.Millisecond
	defer func() { heartbeatEvery = old }()
	repo := newRepo(t)
	write(t, repo, "a.txt", "a\n")
	workdir := filepath.Join(t.TempDir(), "l", "repo")
	runner := newCounting()
	var ev events
	runner.fail = func(c execx.Cmd) (execx.Result, error) {
		// Hold rsync until a heartbeat was reported (bounded), so a loaded
		// machine cannot make the test miss it.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, ok := ev.find("heartbeat", "sync still running: rsync "); ok {
				break
			}
		}
		return execx.OS{}.Run(context.Background(), c)
	}
	if _, err := Sync(context.Background(), runner, newLocalRemote(t), testOptions(repo, workdir), ev.report); err != nil {
		t.Fatal(err)
	}
	if _, ok := ev.find("heartbeat", "sync still running: rsync "); !ok {
		t.Errorf("no heartbeat: %q", ev.messages())
	}
}

func TestHumanSizeAndDuration(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 12_900_000: "12.3 MiB", 5 << 30: "5.0 GiB", 3 << 40: "3.0 TiB"} {
		if got := HumanSize(n); got != want {
			t.Errorf("HumanSize(%d) = %q, want %q", n, got, want)
		}
	}
	if v, n := lastVerb("motd junk\nsync 3\n"); v != "sync" || n != 3 {
		t.Errorf("lastVerb = %q %d", v, n)
	}
	if v, _ := lastVerb("welcome\nskip\n"); v != "skip" {
		t.Errorf("lastVerb skip = %q", v)
	}
}
