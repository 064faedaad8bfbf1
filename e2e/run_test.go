//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

var runIDRe = regexp.MustCompile(`run (run_[0-9a-f]{12}) lease=`)

func runID(t *testing.T, r result) string {
	t.Helper()
	m := runIDRe.FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("no run ID in stderr:\n%s", r.stderr)
	}
	return m[1]
}

// remoteDir is the lease's workdir; lab workspaces are local processes, so
// it can be read directly.
func (w *world) remoteDir(leaseID string) string {
	return filepath.Join(w.home, "remote-work", leaseID, "demo-repo")
}

// Sync and run on one warm lease: exit codes, history, logs, results, the
// no-change skip, same-size/same-mtime edits, deletions, ignore rules and
// env forwarding that never reaches a command line.
func TestRunSyncHistoryEnv(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.write(".gitignore", "ignored.log\n")
	w.write(".crabboxignore", "secret.txt\n")
	w.write("gone.txt", "to be deleted\n")
	w.git("add", "-A")
	w.git("-c", "user.email=e2e@example.com", "-c", "user.name=e2e", "commit", "-qm", "more")
	w.write("untracked.txt", "untracked but not ignored\n")
	w.write("ignored.log", "ignored by git\n")
	w.write("secret.txt", "ignored by crabbox\n")
	l := w.warmup("--slug", "e2e-run")
	remote := w.remoteDir(l.id)

	// Exit codes pass through; output streams to the right streams.
	for _, code := range []string{"0", "3", "130"} {
		r := w.crabbox("run", "--id", l.slug, "--", "sh", "-c", "cat README.md; echo to-stderr >&2; exit "+code)
		if want := mustAtoi(t, code); r.code != want {
			t.Errorf("exit %s: got %d", code, r.code)
		}
		if !strings.Contains(r.stdout, "hello from crabbox e2e") || strings.Contains(r.stdout, "to-stderr") || !strings.Contains(r.stderr, "to-stderr") {
			t.Errorf("streams mixed up:\nstdout=%q\nstderr=%q", r.stdout, r.stderr)
		}
	}
	// The tree arrived: tracked, untracked non-ignored; not the ignored ones.
	for rel, want := range map[string]bool{"README.md": true, "gone.txt": true, "untracked.txt": true, "ignored.log": false, "secret.txt": false, ".crabboxignore": true} {
		if _, err := os.Stat(filepath.Join(remote, rel)); (err == nil) != want {
			t.Errorf("remote %s present=%v, want %v", rel, err == nil, want)
		}
	}

	// history / logs.
	r := w.must("run", "--id", l.id, "--", "echo", "history-marker")
	id := runID(t, r)
	if !strings.Contains(r.stderr, "No changes detected, skipping sync") {
		t.Errorf("unchanged tree was not skipped:\n%s", r.stderr)
	}
	var hist []struct {
		ID, State, LeaseID string
		ExitCode           *int
		DurationMs         *int64
	}
	if err := json.Unmarshal([]byte(w.must("history", "--lease", l.id, "--json").stdout), &hist); err != nil {
		t.Fatal(err)
	}
	if len(hist) != 4 || hist[0].ID != id || hist[0].State != "succeeded" || hist[0].DurationMs == nil || *hist[0].DurationMs <= 0 {
		t.Errorf("history = %+v", hist)
	}
	states := map[string]int{}
	for _, h := range hist {
		states[h.State]++
	}
	if states["succeeded"] != 2 || states["failed"] != 2 {
		t.Errorf("history states = %v", states)
	}
	if out := w.must("logs", id).stdout; !strings.Contains(out, "history-marker") {
		t.Errorf("logs %s = %q", id, out)
	}

	// Edit keeping size and mtime: still synced.
	readme := filepath.Join(w.repo, "README.md")
	st, _ := os.Stat(readme)
	if err := os.WriteFile(readme, []byte("HELLO FROM CRABBOX E2E\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(readme, st.ModTime(), st.ModTime())
	// Delete a tracked file and add an untracked one.
	os.Remove(filepath.Join(w.repo, "gone.txt"))
	w.write("new-file.txt", "new\n")
	r = w.must("run", "--id", l.slug, "--", "cat", "README.md")
	if !strings.Contains(r.stdout, "HELLO FROM CRABBOX E2E") {
		t.Errorf("same-size same-mtime edit not synced: %q", r.stdout)
	}
	if _, err := os.Stat(filepath.Join(remote, "gone.txt")); err == nil {
		t.Errorf("deleted file still on the workspace")
	}
	if _, err := os.Stat(filepath.Join(remote, "new-file.txt")); err != nil {
		t.Errorf("new untracked file not synced")
	}

	// JUnit results and --fail-on-test-failures.
	junit := `<testsuite name="s" tests="2" failures="1"><testcase name="ok"/><testcase name="bad"><failure message="boom"/></testcase></testsuite>`
	r = w.crabbox("run", "--id", l.slug, "--junit", "out/junit.xml", "--fail-on-test-failures", "--", "sh", "-c", "mkdir -p out && printf '%s' '"+junit+"' > out/junit.xml")
	if r.code != 1 || !strings.Contains(r.stderr, "results format=junit files=1 suites=1 tests=2 failures=1") {
		t.Errorf("junit run: exit %d\n%s", r.code, r.stderr)
	}
	var sum struct {
		Tests, Failures int
		Failed          []struct{ Name, Message string }
	}
	if err := json.Unmarshal([]byte(w.must("results", runID(t, r), "--json").stdout), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Tests != 2 || sum.Failures != 1 || len(sum.Failed) != 1 || sum.Failed[0].Name != "bad" {
		t.Errorf("results = %+v", sum)
	}

	// Env forwarding: allowlisted value reaches the command, never a
	// command line on this machine (lab workspaces are local processes, so
	// /proc covers both sides), never the run record or the log.
	secret := "cbx-e2e-s3cr3t-" + time.Now().Format("150405.000000")
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, lab.Crabbox, "run", "--id", l.slug, "--allow-env", "CBX_E2E_*", "--", "sh", "-c", `echo "len=${#CBX_E2E_SECRET}"; sleep 3`)
	cmd.Dir, cmd.Env = w.repo, append(append([]string{}, w.env...), "CBX_E2E_SECRET="+secret)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The lab's real Coder session token: it must not show up either.
	tok, err := os.ReadFile(filepath.Join(lab.ConfigDir, "session"))
	if err != nil || len(strings.TrimSpace(string(tok))) < 16 {
		t.Fatalf("lab session token: %v", err)
	}
	token := strings.TrimSpace(string(tok))
	leaks, tokenLeaks := 0, 0
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
poll:
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("env run: %v\n%s", err, errb.String())
			}
			break poll
		case <-time.After(50 * time.Millisecond):
			leaks += procCmdlinesContaining(secret)
			tokenLeaks += procCmdlinesContaining(token)
		}
	}
	if leaks != 0 || tokenLeaks != 0 {
		t.Errorf("secret seen on %d, Coder token on %d process command lines", leaks, tokenLeaks)
	}
	if !strings.Contains(out.String(), "len="+itoa(len(secret))) {
		t.Errorf("secret not forwarded: %q", out.String())
	}
	stateDir := filepath.Join(w.home, ".local", "state", "crabbox")
	for what, v := range map[string]string{"secret": secret, "Coder token": token} {
		if hit := grepDir(t, stateDir, v); hit != "" {
			t.Errorf("%s stored in %s", what, hit)
		}
		if strings.Contains(out.String()+errb.String(), v) {
			t.Errorf("%s printed by crabbox", what)
		}
	}
}

// A one-shot run (no --id) creates a workspace and releases it: stopped by
// default, deleted with --coder-delete-on-release; no claim left behind.
func TestRunOneShotReleases(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	for _, del := range []bool{false, true} {
		args := []string{"run", "--", "echo", "one-shot"}
		if del {
			args = []string{"run", "--coder-delete-on-release", "--", "echo", "one-shot"}
		}
		r := w.crabbox(args...)
		m := workspaceRe.FindStringSubmatch(r.stderr)
		if m == nil {
			t.Fatalf("no provisioning line:\n%s", r.stderr)
		}
		ws := m[2]
		t.Cleanup(func() { w.deleteWorkspace(ws) })
		if r.code != 0 || !strings.Contains(r.stdout, "one-shot") || !strings.Contains(r.stderr, "lease cleanup stopped=true") {
			t.Fatalf("one-shot run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		row := w.coderRow(ws)
		switch {
		case del && row != nil:
			t.Errorf("--coder-delete-on-release left %s: %+v", ws, row)
		case !del && (row == nil || row.Status != "stopped"):
			t.Errorf("one-shot left %s in %+v, want stopped", ws, row)
		}
		if out := w.must("claims", "list", "--json").stdout; strings.Contains(out, m[1]) {
			t.Errorf("claim %s left behind: %s", m[1], out)
		}
	}
}

// SIGINT mid-command: exit 130, the run is recorded interrupted, the remote
// command is gone and the one-shot lease is released.
func TestRunInterrupt(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	marker := "crabbox-e2e-sleep-" + time.Now().Format("150405")
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, lab.Crabbox, "run", "--", "sh", "-c", "echo started; exec sleep 300 # "+marker)
	cmd.Dir, cmd.Env = w.repo, w.env
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(out.String(), "started") || procCmdlinesContaining(marker) == 0 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("command never started:\n%s", errb.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if m := workspaceRe.FindStringSubmatch(errb.String()); m != nil {
		t.Cleanup(func() { w.deleteWorkspace(m[2]) })
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errorsAs(err, &ee) || ee.ExitCode() != 130 {
		t.Errorf("interrupted run: %v, want exit 130\n%s", err, errb.String())
	}
	if n := procCmdlinesContaining(marker); n != 0 {
		t.Errorf("remote command still running (%d processes)", n)
	}
	m := workspaceRe.FindStringSubmatch(errb.String())
	if m == nil {
		t.Fatalf("no provisioning line:\n%s", errb.String())
	}
	if row := w.coderRow(m[2]); row == nil || row.Status != "stopped" {
		t.Errorf("lease not released after interrupt: %+v", row)
	}
	var hist []struct{ State string }
	json.Unmarshal([]byte(w.must("history", "--json").stdout), &hist)
	if len(hist) != 1 || hist[0].State != "interrupted" {
		t.Errorf("history = %+v", hist)
	}
}

// With a credential-free origin the workspace can reach (a local bare repo:
// lab workspaces run on this machine), the first sync clones HEAD there
// first; rsync then only completes the dirty tree. A dirty edit on top of
// the seeded commit still arrives.
func TestRunGitSeed(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	origin := filepath.Join(t.TempDir(), "origin.git")
	if out, err := runCmd(cmdTimeout, w.repo, w.env, "git", "init", "-q", "--bare", origin); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	w.git("remote", "add", "origin", origin)
	w.git("push", "-q", "origin", "main")
	w.git("fetch", "-q", "origin")
	w.write("README.md", "dirty on top of the seed\n")
	l := w.warmup("--slug", "e2e-seed")
	r := w.must("run", "--id", l.slug, "--timing-json", "--", "cat", "README.md")
	if !strings.Contains(r.stdout, "dirty on top of the seed") {
		t.Errorf("dirty edit not synced over the seed: %q", r.stdout)
	}
	if !strings.Contains(r.stderr, `"name":"seed"`) || strings.Contains(r.stderr, "git seed failed") {
		t.Errorf("no seed phase in timing:\n%s", r.stderr)
	}
	// The workdir is named after the origin URL's repo ("origin"), not the
	// local directory's name.
	m := regexp.MustCompile(`workdir=(\S+)`).FindStringSubmatch(r.stderr)
	if m == nil || filepath.Base(m[1]) != "origin" {
		t.Fatalf("workdir in %q", r.stderr)
	}
	remote := m[1]
	out, err := runCmd(cmdTimeout, remote, w.env, "git", "rev-parse", "HEAD")
	local, _ := runCmd(cmdTimeout, w.repo, w.env, "git", "rev-parse", "HEAD")
	if err != nil || strings.TrimSpace(string(out)) != strings.TrimSpace(string(local)) {
		t.Errorf("remote HEAD %q (%v), local %q", out, err, local)
	}
	if out, _ := runCmd(cmdTimeout, remote, w.env, "git", "remote", "get-url", "origin"); strings.TrimSpace(string(out)) != origin {
		t.Errorf("remote origin = %q", out)
	}
}
