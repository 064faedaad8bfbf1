package syncer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
)

// fakeRemote is a Remote for tests that never reach the remote shell.
type fakeRemote struct{}

func (fakeRemote) Run(context.Context, string, io.Reader, io.Writer, io.Writer) (int, error) {
	return 0, errors.New("fakeRemote: no remote")
}
func (fakeRemote) RSH() string          { return "ssh" }
func (fakeRemote) Target() lease.Target { return lease.Target{User: "coder", Host: "ws.example"} }

// TestRsyncExitClassification (issue 8, defect 12): an rsync that lost its
// transport is a transport error (exit 7, retried once over a new tunnel
// by the caller) saying so; every other failure stays a sync error (6).
func TestRsyncExitClassification(t *testing.T) {
	for _, tc := range []struct {
		name   string
		code   int
		stderr string
		want   int
		msg    string
	}{
		{"ssh died", 255, "Connection closed by UNKNOWN port 65535\r\nrsync: connection unexpectedly closed (0 bytes received so far) [sender]\nrsync error: unexplained error (code 255) at io.c(232) [sender=3.2.7]\n", exitcode.Transport, "lost its connection (exit 255)"},
		{"stream broke", 12, "rsync: connection unexpectedly closed (1234 bytes received so far) [sender]\nrsync error: error in rsync protocol data stream (code 12) at io.c(232) [sender=3.2.7]\n", exitcode.Transport, "lost its connection (exit 12)"},
		{"broken pipe", 12, "rsync: [sender] write error: Broken pipe (32)\nrsync error: error in socket IO (code 10) at io.c(848) [sender=3.2.7]\n", exitcode.Transport, "Broken pipe"},
		{"socket io", 10, "rsync error: error in socket IO (code 10) at io.c(848) [sender=3.2.7]\n", exitcode.Transport, "lost its connection (exit 10)"},
		{"broken pipe, partial", 23, "rsync: [receiver] write failed on \"x\": Broken pipe (32)\n", exitcode.Transport, "lost its connection (exit 23)"},
		{"reset", 23, "read: Connection reset by peer\n", exitcode.Transport, "lost its connection"},
		{"could not make way", 23, "could not make way for new regular file: d\nrsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1338) [sender=3.2.7]\n", exitcode.Sync, "failed (exit 23)"},
		{"disk full", 11, "rsync: [receiver] write failed on \"big\": No space left on device (28)\nrsync error: error in file IO (code 11)\n", exitcode.Sync, "No space left on device"},
		{"no remote rsync", 12, "bash: line 1: rsync: command not found\nrsync: connection unexpectedly closed (0 bytes received so far) [sender]\nrsync error: error in rsync protocol data stream (code 12)\n", exitcode.Sync, "rsync is not installed on the workspace"},
		{"no remote rsync, exec", 12, "crabbox-rsync: line 15: exec: rsync: not found\nrsync: connection unexpectedly closed (0 bytes received so far) [sender]\n", exitcode.Sync, "rsync is not installed on the workspace"},
		{"fenced", 12, receiverMark + " refusing to write into /w/l/r: a newer sync (generation b) replaced this one (a)\nrsync: connection unexpectedly closed (0 bytes received so far) [sender]\n", exitcode.Sync, "refused by the workspace"},
		{"protocol", 2, "rsync: protocol version mismatch -- is your shell clean?\n", exitcode.Sync, "failed (exit 2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := execx.NewFake().On("rsync", execx.Reply{ExitCode: tc.code, Stderr: tc.stderr})
			o := DefaultOptions()
			o.RepoRoot, o.Workdir = t.TempDir(), "/w/l/r"
			_, err := runRsync(context.Background(), f, fakeRemote{}, o, "0a", false, []string{"a"}, func(Event) {})
			if got := exitcode.Code(err); got != tc.want || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("exit %d: err = %v (code %d), want code %d containing %q", tc.code, err, got, tc.want, tc.msg)
			}
			if !strings.Contains(err.Error(), "ws.example") || !strings.Contains(err.Error(), "next_action=") {
				t.Errorf("err lacks the host or the next action: %v", err)
			}
		})
	}
	// Exit 24 (files vanished) is no error; a timeout stays exit 6.
	f := execx.NewFake().On("rsync", execx.Reply{ExitCode: 24, Stderr: "file has vanished: \"x\"\n"})
	o := DefaultOptions()
	o.RepoRoot, o.Workdir = t.TempDir(), "/w/l/r"
	if vanished, err := runRsync(context.Background(), f, fakeRemote{}, o, "0a", false, nil, func(Event) {}); err != nil || !vanished {
		t.Errorf("exit 24: vanished=%v err=%v", vanished, err)
	}
}

// TestRsyncInvocation: the list rsync reads prefixes every entry with
// "./" (rsync skips --files-from lines starting with # or ; even with
// --from0), the receiver starts through the fencing wrapper for this
// generation, and --force lets a file replace a filled directory.
func TestRsyncInvocation(t *testing.T) {
	f := execx.NewFake().On("rsync", execx.Reply{})
	o := DefaultOptions()
	o.RepoRoot, o.Workdir = t.TempDir(), "/w/l/r"
	files := []string{"#a", ";b", "#dir/x", "-e", "nl\nx", "plain"}
	if _, err := runRsync(context.Background(), f, fakeRemote{}, o, "00ff", false, files, func(Event) {}); err != nil {
		t.Fatal(err)
	}
	c := f.Calls()[0]
	if want := "./#a\x00./;b\x00./#dir/x\x00./-e\x00./nl\nx\x00./plain\x00"; c.Stdin != want {
		t.Errorf("rsync list = %q, want %q", c.Stdin, want)
	}
	args := strings.Join(c.Args, "\n")
	for _, want := range []string{"--force", "--files-from=-", "--from0", "--rsync-path=" + receiverCommand("/w/l/r", "00ff")} {
		if !strings.Contains(args, want) {
			t.Errorf("rsync args lack %q:\n%s", want, args)
		}
	}
	if !strings.Contains(receiverCommand("/w/l/r", "00ff"), " crabbox-rsync '/w/l/r' '00ff' 'rsync'") {
		t.Errorf("receiver command = %q", receiverCommand("/w/l/r", "00ff"))
	}
}

// TestTypeSwaps (issue 8, defect 8): a path whose type changed locally is
// replaced on the remote even when the remote filled the old directory.
func TestTypeSwaps(t *testing.T) {
	ctx := context.Background()
	repo := newRepo(t)
	write(t, repo, "d/a.txt", "a\n")
	write(t, repo, "ds/a.txt", "a\n")
	write(t, repo, "deep/d/e/a.txt", "a\n")
	write(t, repo, "f", "file\n")
	write(t, repo, "t.txt", "t\n")
	if err := os.Symlink("t.txt", filepath.Join(repo, "s")); err != nil {
		t.Fatal(err)
	}
	workdir := filepath.Join(t.TempDir(), "l", "repo")
	rem := newLocalRemote(t)
	o := testOptions(repo, workdir)
	if _, err := Sync(ctx, execx.OS{}, rem, o, nil); err != nil {
		t.Fatal(err)
	}
	write(t, workdir, "d/generated.txt", "gen\n")
	write(t, workdir, "ds/generated.txt", "gen\n")
	write(t, workdir, "deep/d/e/out/generated.txt", "gen\n")
	for _, p := range []string{"d", "ds", "deep/d", "f", "s"} {
		os.RemoveAll(filepath.Join(repo, p))
	}
	write(t, repo, "d", "x\n")
	write(t, repo, "deep/d", "nested\n")
	write(t, repo, "f/inner.txt", "dir now\n")
	write(t, repo, "s/inner.txt", "was a link\n")
	if err := os.Symlink("t.txt", filepath.Join(repo, "ds")); err != nil {
		t.Fatal(err)
	}
	if _, err := Sync(ctx, execx.OS{}, rem, o, nil); err != nil {
		t.Fatalf("sync after type swaps: %v", err)
	}
	want := map[string]string{"d": "x\n", "deep/d": "nested\n", "f/inner.txt": "dir now\n", "s/inner.txt": "was a link\n", "ds": "-> t.txt", "t.txt": "t\n"}
	got := remoteTree(t, workdir)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("remote %s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("remote tree = %q", got)
	}
}

// runScriptLocal runs a remote script with bash, returning exit code and
// stderr.
func runScriptLocal(t *testing.T, script string, stdin string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{"-c", script, "crabbox-sync"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), errb.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, errb.String()
}

// TestGenerationFence (issue 8, defect 4, workspace side): once a newer
// prepare ran, a receiver or finalize of an older generation refuses to
// write; a receiver holds the lock for its whole life, and prepare waits
// for it.
func TestGenerationFence(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("flock not installed")
	}
	ctx := context.Background()
	repo := newRepo(t)
	write(t, repo, "a.txt", "a\n")
	commitAll(t, repo)
	workdir := filepath.Join(t.TempDir(), "l", "repo")
	meta := filepath.Join(workdir, ".crabbox", "sync")
	rem := newLocalRemote(t)
	o := testOptions(repo, workdir)
	if _, err := Sync(ctx, execx.OS{}, rem, o, nil); err != nil {
		t.Fatal(err)
	}
	prepare := func(gen string) (int, string) {
		return runScriptLocal(t, prepareScript, "\n\x00a.txt\x00", workdir, "0", "1", "1", "", gen)
	}
	receiver := func(gen string, argv ...string) (int, string) {
		return runScriptLocal(t, receiverScript, "", append([]string{workdir, gen}, argv...)...)
	}
	if code, errs := prepare("0a"); code != 0 {
		t.Fatalf("prepare 0a: exit %d %s", code, errs)
	}
	// Positive control: the current generation's receiver runs.
	canary := filepath.Join(t.TempDir(), "ran")
	if code, errs := receiver("0a", "touch", canary); code != 0 {
		t.Fatalf("receiver of the current generation: exit %d %s", code, errs)
	}
	if _, err := os.Stat(canary); err != nil {
		t.Fatal("the current generation's receiver did not run its command")
	}
	os.Remove(canary)
	if code, errs := prepare("0b"); code != 0 {
		t.Fatalf("prepare 0b: exit %d %s", code, errs)
	}
	code, errs := receiver("0a", "touch", canary)
	if _, err := os.Stat(canary); code != 5 || err == nil || !strings.Contains(errs, receiverMark+" refusing to write") {
		t.Errorf("older generation's receiver: exit %d, ran=%v, stderr %q", code, err == nil, errs)
	}
	if code, errs := runScriptLocal(t, finalizeScript, "", workdir, "fp-of-0a", "0a"); code != 5 || !strings.Contains(errs, "not finalizing") {
		t.Errorf("older generation's finalize: exit %d %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(meta, "fingerprint")); err == nil {
		t.Error("an older generation's finalize wrote the fingerprint")
	}
	// A whole rsync of the older generation is refused, as a sync error.
	write(t, repo, "a.txt", "orphan's content\n")
	_, err := runRsync(ctx, execx.OS{}, rem, o, "0a", false, []string{"a.txt"}, func(Event) {})
	if exitcode.Code(err) != exitcode.Sync || !strings.Contains(err.Error(), "refused by the workspace") {
		t.Errorf("rsync of an older generation: %v", err)
	}
	if got := read(t, filepath.Join(workdir, "a.txt")); got != "a\n" {
		t.Errorf("an older generation's rsync wrote a.txt: %q", got)
	}
	if code, errs := runScriptLocal(t, finalizeScript, "", workdir, "fp-of-0b", "0b"); code != 0 {
		t.Errorf("current finalize: exit %d %q", code, errs)
	}

	// The lock is held by something that is no receiver of the recorded
	// generation (a forged record names a bystander): nothing is
	// signalled, prepare waits for the lock.
	bystander := exec.Command("sleep", "30")
	if err := bystander.Start(); err != nil {
		t.Fatal(err)
	}
	defer bystander.Process.Kill()
	write(t, meta, "receiver", strconv.Itoa(bystander.Process.Pid)+" 0b\n")
	locker := exec.Command("flock", filepath.Join(meta, "lock"), "sleep", "1.5")
	start := time.Now()
	if err := locker.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if code, errs := prepare("0c"); code != 0 || strings.Contains(errs, "stopped") {
		t.Fatalf("prepare 0c: exit %d %q", code, errs)
	}
	if waited := time.Since(start); waited < 1400*time.Millisecond {
		t.Errorf("prepare finished %v after a 1.5 s lock holder started: it did not wait for the lock", waited)
	}
	locker.Wait()
	if bystander.Process.Signal(syscall.Signal(0)) != nil {
		t.Fatal("a process that is no receiver was signalled")
	}

	// A running receiver holds the lock: a newer prepare stops it, takes
	// the lock, and from then on the old generation is refused.
	hold := exec.Command("bash", "-c", receiverScript, "crabbox-rsync", workdir, "0c", "sleep", "30")
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	held := make(chan error, 1)
	go func() { held <- hold.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); !strings.HasPrefix(read(t, filepath.Join(meta, "receiver")), strconv.Itoa(hold.Process.Pid)+" 0c"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			hold.Process.Kill()
			t.Fatal("the receiver never recorded itself")
		}
	}
	start = time.Now()
	code, errs = prepare("0d")
	if code != 0 || !strings.Contains(errs, stoppedReceiverNote+" (0c, pid ") {
		t.Fatalf("prepare 0d: exit %d %q", code, errs)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("prepare 0d took %v: it waited for the older receiver instead of stopping it", took)
	}
	select {
	case err := <-held:
		if err == nil {
			t.Error("the older receiver ended normally; want it stopped")
		}
	case <-time.After(5 * time.Second):
		hold.Process.Kill()
		t.Fatal("the older receiver still runs after the newer prepare")
	}
	if code, _ := receiver("0c", "true"); code != 5 {
		t.Errorf("receiver 0c after prepare 0d: exit %d, want 5", code)
	}
	// Full resync keeps the lock file (one lock for the workdir's life).
	o.FullResync = true
	if _, err := Sync(ctx, execx.OS{}, rem, o, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(meta, "lock")); err != nil {
		t.Errorf("full resync removed the lock: %v", err)
	}
}

// TestSeedFence: the git seed moves its clone into the workdir only while
// its generation is the recorded one.
func TestSeedFence(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("flock not installed")
	}
	origin := newRepo(t)
	write(t, origin, "seeded.txt", "from origin\n")
	commitAll(t, origin)
	head := strings.TrimSpace(gitIn(t, origin, "rev-parse", "HEAD"))
	branch := strings.TrimSpace(gitIn(t, origin, "rev-parse", "--abbrev-ref", "HEAD"))
	workdir := filepath.Join(t.TempDir(), "l", "repo")
	write(t, workdir, ".crabbox/sync/generation", "0b\n")
	// Older generation: nothing is moved in.
	if code, errs := runScriptLocal(t, seedScript, "", workdir, origin, branch, head, "0a"); code != 7 || !strings.Contains(errs, "not seeding") {
		t.Fatalf("seed of an older generation: exit %d %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(workdir, "seeded.txt")); err == nil {
		t.Fatal("an older generation's seed filled the workdir")
	}
	// Positive control: the current generation seeds.
	if code, errs := runScriptLocal(t, seedScript, "", workdir, origin, branch, head, "0b"); code != 0 {
		t.Fatalf("seed of the current generation: exit %d %q", code, errs)
	}
	if got := read(t, filepath.Join(workdir, "seeded.txt")); got != "from origin\n" {
		t.Errorf("seeded.txt = %q", got)
	}
}
