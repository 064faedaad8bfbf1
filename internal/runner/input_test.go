package runner

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func random(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// runBounded runs s and fails the test if Run does not return within a
// generous bound (a stalled stdin copy would hang it).
func runBounded(t *testing.T, ctx context.Context, h *harness, s Spec) (Outcome, error) {
	t.Helper()
	type res struct {
		out Outcome
		err error
	}
	done := make(chan res, 1)
	go func() {
		out, err := Run(ctx, h.deps, s)
		done <- res{out, err}
	}()
	select {
	case r := <-done:
		return r.out, r.err
	case <-time.After(60 * time.Second):
		t.Fatalf("Run did not return\nnotes:\n%s", h.notes)
		return Outcome{}, nil
	}
}

// Forwarded stdin reaches the command byte for byte, and the forwarded
// environment is still set; without Stdin the command reads /dev/null.
func TestRunForwardsStdin(t *testing.T) {
	payload := random(t, 4<<20)
	for _, tc := range []struct {
		name  string
		stdin []byte
		want  string
	}{
		{"forwarded", payload, sha(payload) + " bar"},
		{"none", nil, sha(nil) + " bar"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			s := h.spec("sh", "-c", `s=$(sha256sum | cut -d' ' -f1); echo "$s $FOO"`)
			if tc.stdin != nil {
				s.Stdin = bytes.NewReader(tc.stdin)
			}
			_, err := runBounded(t, context.Background(), h, s)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, h.notes)
			}
			if got := strings.TrimSpace(h.out.String()); got != tc.want {
				t.Fatalf("stdout %q, want %q", got, tc.want)
			}
		})
	}
}

// crabbox's stdin held open without data: a command that does not read it
// ends and the run succeeds (the ssh process gets a pipe, not a copying
// goroutine that Wait would wait on); a command that reads it sees EOF
// once the input closes.
func TestRunStdinOpenButUnread(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	defer pr.Close()
	h := newHarness(t)
	s := h.spec("echo", "ran")
	s.Stdin = pr
	if _, err := runBounded(t, context.Background(), h, s); err != nil {
		t.Fatalf("run with an open, unread stdin: %v\n%s", err, h.notes)
	}
	if strings.TrimSpace(h.out.String()) != "ran" {
		t.Fatalf("stdout %q", h.out)
	}

	// cat at EOF: an empty, closed input.
	h = newHarness(t)
	s = h.spec("sh", "-c", "cat; echo cat-done")
	s.Stdin = strings.NewReader("")
	if _, err := runBounded(t, context.Background(), h, s); err != nil || strings.TrimSpace(h.out.String()) != "cat-done" {
		t.Fatalf("cat at EOF: %v, stdout %q", err, h.out)
	}
}

// Interrupting a command that blocks reading forwarded stdin still stops
// its remote process group.
func TestRunInterruptWhileReadingStdin(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	defer pr.Close()
	h := newHarness(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	s := h.spec("sh", "-c", "echo $$ > "+pidFile+"; exec cat")
	s.Stdin = pr
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type res struct {
		out Outcome
		err error
	}
	done := make(chan res, 1)
	go func() {
		out, err := Run(ctx, h.deps, s)
		done <- res{out, err}
	}()
	var pid []byte
	for deadline := time.Now().Add(20 * time.Second); len(pid) == 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		pid, _ = os.ReadFile(pidFile)
	}
	if len(pid) == 0 {
		t.Fatal("the command never started")
	}
	if _, err := pw.Write([]byte("some input\n")); err != nil {
		t.Fatal(err)
	}
	cancel()
	var r res
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after the interrupt")
	}
	if exitcode.Code(r.err) != exitcode.Interrupted || r.out.State != "interrupted" {
		t.Fatalf("err %v state %s", r.err, r.out.State)
	}
	if _, err := os.Stat("/proc/" + strings.TrimSpace(string(pid))); err == nil {
		t.Errorf("remote cat %s still running after the interrupt", strings.TrimSpace(string(pid)))
	}
}

// A user script runs from the workdir with its arguments ($0 is the
// upload under .crabbox/scripts/), can read forwarded stdin, and history
// shows it as --script NAME ARGS.
func TestRunScript(t *testing.T) {
	h := newHarness(t)
	body := "printf '%s|' \"$PWD\" \"$FOO\" \"$@\"; echo; case $0 in */.crabbox/scripts/*.sh) echo upload;; esac\ntr a-z A-Z\n" +
		"# 'odd' \"chars\" `here` $(and) \\ " + strings.Repeat("z", 1<<20) + "\n"
	s := h.spec("it's", "two words")
	s.Script = &Script{Name: "./odd script.sh", Body: []byte(body)}
	s.Stdin = strings.NewReader("from stdin")
	s.Shell = true // ignored with a script
	out, err := runBounded(t, context.Background(), h, s)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, h.notes)
	}
	wd := filepath.Join(h.workDir, "cbx_0123456789ab", filepath.Base(h.repo))
	want := wd + "|bar|it's|two words|\nupload\nFROM STDIN"
	if got := strings.TrimSpace(h.out.String()); got != want {
		t.Fatalf("stdout %q\nwant   %q", got, want)
	}
	rec, _ := h.store.Get(out.RunID)
	if !slices.Equal(rec.Command, []string{"--script", "./odd script.sh", "it's", "two words"}) || rec.Shell {
		t.Errorf("recorded command %q shell=%v", rec.Command, rec.Shell)
	}
	if !strings.Contains(h.notes.String(), "running on ws --script './odd script.sh'") {
		t.Errorf("run line:\n%s", h.notes)
	}
}

// --capture-stdout and --capture-stderr: each stream's raw bytes land in
// its own 0600 file (binary, same hash as on the "remote" side), none of
// them on the terminal or in the log; the log and the notes record the
// capture with its byte count.
func TestRunCaptures(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	remote := filepath.Join(dir, "remote.bin")
	s := h.spec("sh", "-c", "head -c 3000000 /dev/urandom | tee "+remote+"; echo on-stderr >&2")
	s.CaptureStdout = filepath.Join(dir, "out.bin")
	s.CaptureStderr = filepath.Join(dir, "err.txt")
	out, err := runBounded(t, context.Background(), h, s)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, h.notes)
	}
	rb, err := os.ReadFile(remote)
	if err != nil || len(rb) != 3000000 {
		t.Fatalf("remote copy: %d bytes, %v", len(rb), err)
	}
	got, err := os.ReadFile(s.CaptureStdout)
	if err != nil || sha(got) != sha(rb) {
		t.Fatalf("stdout capture: %d bytes (%v), hash differs from the remote stream", len(got), err)
	}
	if e, _ := os.ReadFile(s.CaptureStderr); string(e) != "on-stderr\n" {
		t.Errorf("stderr capture %q", e)
	}
	for _, p := range []string{s.CaptureStdout, s.CaptureStderr} {
		if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", p, st.Mode())
		}
	}
	if h.out.Len() != 0 || h.errOut.Len() != 0 {
		t.Errorf("captured output reached the terminal: stdout %d bytes, stderr %q", h.out.Len(), h.errOut)
	}
	log, _, _ := h.store.ReadLog(out.RunID, 0)
	for _, want := range []string{
		"crabbox: stdout captured to " + s.CaptureStdout + " (3000000 bytes)",
		"crabbox: stderr captured to " + s.CaptureStderr + " (10 bytes)",
	} {
		if !strings.Contains(log, want) || !strings.Contains(h.notes.String(), strings.TrimPrefix(want, "crabbox: ")) {
			t.Errorf("log/notes lack %q\nlog:\n%.2000s\nnotes:\n%s", want, log, h.notes)
		}
	}
	if len(log) > 1000 {
		t.Errorf("the log holds %d bytes: the captured stream went into it", len(log))
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("files left in the capture dir: %v", entries)
	}
}

// A capture of a failing command still lands (the command's exit code is
// the run's); a run that fails before its command writes no capture and
// leaves an older file alone.
func TestRunCaptureOnFailure(t *testing.T) {
	h := newHarness(t)
	p := filepath.Join(t.TempDir(), "out.txt")
	s := h.spec("sh", "-c", "echo partial; exit 4")
	s.CaptureStdout = p
	if out, _ := runBounded(t, context.Background(), h, s); out.Exit != 4 {
		t.Fatalf("exit %d", out.Exit)
	}
	if b, _ := os.ReadFile(p); string(b) != "partial\n" {
		t.Errorf("capture %q", b)
	}

	h = newHarness(t)
	h.prov.acquireErr = exitcode.Errorf(exitcode.NotFound, "no machine")
	s = h.spec("echo", "never")
	s.CaptureStdout = p
	if _, err := runBounded(t, context.Background(), h, s); exitcode.Code(err) != exitcode.NotFound {
		t.Fatalf("err %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "partial\n" {
		t.Errorf("a run that never ran its command changed the capture file: %q", b)
	}
	if entries, _ := os.ReadDir(filepath.Dir(p)); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

// Two captures naming one file (also through another spelling or a
// symlinked directory), a directory, or a missing directory: exit 2
// before anything runs (no provider call, no ssh, no record).
func TestRunRefusesBadOutputs(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	same := filepath.Join(dir, "same")
	os.WriteFile(same, nil, 0o600)
	hard := filepath.Join(dir, "hard")
	if err := os.Link(same, hard); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, stdout, stderr, want string
	}{
		{"same path", filepath.Join(dir, "x"), filepath.Join(dir, "x"), "name the same local file"},
		{"other spelling", filepath.Join(dir, "x"), dir + "/./sub/../x", "name the same local file"},
		{"symlinked dir", filepath.Join(dir, "x"), filepath.Join(link, "x"), "name the same local file"},
		{"hard link", same, hard, "name the same local file"},
		{"directory", dir, "", "is a directory"},
		{"missing dir", filepath.Join(dir, "nope", "x"), "", "does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			s := h.spec("echo", "never")
			s.CaptureStdout, s.CaptureStderr = tc.stdout, tc.stderr
			out, err := Run(context.Background(), h.deps, s)
			if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v (exit %d), want exit 2 with %q", err, exitcode.Code(err), tc.want)
			}
			if len(h.prov.calls) != 0 || len(h.lb.calls()) != 0 {
				t.Errorf("ran something: provider %q, exec %q", h.prov.calls, h.lb.calls())
			}
			if _, gerr := h.store.Get(out.RunID); gerr == nil {
				t.Error("a run record was written")
			}
		})
	}
	// Positive control: two distinct files pass.
	if err := CheckLocalOutputs([]LocalOutput{{Flag: "--capture-stdout", Path: filepath.Join(dir, "a")}, {Flag: "--capture-stderr", Path: filepath.Join(dir, "b")}}); err != nil {
		t.Errorf("distinct files refused: %v", err)
	}
}
