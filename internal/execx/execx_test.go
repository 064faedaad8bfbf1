package execx

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func needSh(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("sh not installed")
	}
}

func TestOSRunSuccessAndCapture(t *testing.T) {
	needSh(t)
	var live bytes.Buffer
	res, err := OS{}.Run(context.Background(), Cmd{
		Name: "sh", Args: []string{"-c", `printf out; printf err >&2; printf '%s' "$CRABBOX_T"; pwd`},
		Env: []string{"CRABBOX_T=v"}, Dir: t.TempDir(), Stdout: &live,
	})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Run: %v (exit %d)", err, res.ExitCode)
	}
	if !strings.HasPrefix(string(res.Stdout), "outv/") || string(res.Stderr) != "err" {
		t.Errorf("stdout %q stderr %q", res.Stdout, res.Stderr)
	}
	if live.String() != string(res.Stdout) {
		t.Errorf("live stdout %q != captured %q", live.String(), res.Stdout)
	}
}

func TestOSRunExitError(t *testing.T) {
	needSh(t)
	res, err := OS{}.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "echo boom >&2; exit 3"}})
	var ee *ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("err %T %v, want *ExitError", err, err)
	}
	if ee.Code != 3 || res.ExitCode != 3 || ee.Output != "boom" || !strings.Contains(ee.Error(), "exit status 3: boom") {
		t.Errorf("ExitError %+v, res.ExitCode %d", ee, res.ExitCode)
	}
	// Killed by a signal: 128+n.
	_, err = OS{}.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "kill -KILL $$"}})
	if !errors.As(err, &ee) || ee.Code != 137 {
		t.Errorf("signal exit: %v", err)
	}
	// A missing program is the exec error, not an ExitError.
	_, err = OS{}.Run(context.Background(), Cmd{Name: "crabbox-no-such-program-xyz"})
	if err == nil || errors.As(err, &ee) {
		t.Errorf("missing program: %v", err)
	}
}

// alive reports whether pid is a running (non-zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// TestOSRunTimeoutKillsGroup: a timeout ends the whole process group, the
// background child included, and is a *TimeoutError.
func TestOSRunTimeoutKillsGroup(t *testing.T) {
	needSh(t)
	pids := filepath.Join(t.TempDir(), "pids")
	start := time.Now()
	res, err := OS{}.Run(context.Background(), Cmd{
		Name:    "sh",
		Args:    []string{"-c", `sleep 30 & echo $! > "$0"; sleep 30 & echo $! >> "$0"; wait`, pids},
		Timeout: 300 * time.Millisecond,
	})
	var te *TimeoutError
	if !errors.As(err, &te) || te.Timeout != 300*time.Millisecond || res.ExitCode != -1 {
		t.Fatalf("err %v (exit %d), want *TimeoutError", err, res.ExitCode)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("timeout took %v", el)
	}
	b, err := os.ReadFile(pids)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		t.Fatalf("pids %q", b)
	}
	deadline := time.Now().Add(3 * time.Second)
	for _, f := range fields {
		pid, _ := strconv.Atoi(f)
		for alive(pid) {
			if time.Now().After(deadline) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("sleep %d survived the timeout", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestOSRunContextCancel(t *testing.T) {
	needSh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := OS{}.Run(ctx, Cmd{Name: "sh", Args: []string{"-c", "sleep 30"}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the context's error", err)
	}
}

// TestOSRunPassthrough: the writers get the streams directly and nothing
// is captured.
func TestOSRunPassthrough(t *testing.T) {
	needSh(t)
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := OS{}.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "echo hi; echo there >&2"}, Stdout: f, Stderr: f, Passthrough: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Stdout) != 0 || len(res.Stderr) != 0 {
		t.Errorf("captured %q %q in passthrough", res.Stdout, res.Stderr)
	}
	b, _ := os.ReadFile(f.Name())
	if string(b) != "hi\nthere\n" {
		t.Errorf("file got %q", b)
	}
	// nil writers: /dev/null, no error.
	if _, err := (OS{}).Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "echo x"}, Passthrough: true}); err != nil {
		t.Errorf("nil passthrough: %v", err)
	}
}

func TestOSRunArgvIsLiteral(t *testing.T) {
	needSh(t)
	canary := filepath.Join(t.TempDir(), "pwned")
	args := []string{"$(touch " + canary + ")", "`touch " + canary + "`", "a b", "'\"", "; touch " + canary}
	res, err := OS{}.Run(context.Background(), Cmd{Name: "printf", Args: append([]string{`%s\0`}, args...)})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(strings.TrimSuffix(string(res.Stdout), "\x00"), "\x00"); strings.Join(got, "|") != strings.Join(args, "|") {
		t.Errorf("argv %q", got)
	}
	if _, err := os.Stat(canary); err == nil {
		t.Fatal("argv executed")
	}
}

func TestCapBuffer(t *testing.T) {
	var b capBuffer
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	for i := 0; i < 20; i++ {
		if n, err := b.Write(chunk); n != len(chunk) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if b.Len() != CaptureLimit {
		t.Errorf("kept %d bytes, want %d", b.Len(), CaptureLimit)
	}
}

func TestFake(t *testing.T) {
	f := NewFake().On("coder list", Reply{Stdout: "a"}, Reply{Stdout: "b"}).On("coder list --all", Reply{ExitCode: 2, Stderr: "bad"})
	ctx := context.Background()
	for _, want := range []string{"a", "b", "b"} { // the last reply repeats
		res, err := f.Run(ctx, Cmd{Name: "coder", Args: []string{"list", "-o", "json"}})
		if err != nil || string(res.Stdout) != want {
			t.Fatalf("got %q %v, want %q", res.Stdout, err, want)
		}
	}
	_, err := f.Run(ctx, Cmd{Name: "coder", Args: []string{"list", "--all"}, Stdin: strings.NewReader("in")})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 2 {
		t.Errorf("longest prefix: %v", err)
	}
	// "coder listing" does not match the prefix "coder list".
	_, err = f.Run(ctx, Cmd{Name: "coder", Args: []string{"listing"}})
	if err == nil || !strings.Contains(err.Error(), "unexpected call: coder listing") {
		t.Errorf("unexpected call: %v", err)
	}
	calls := f.Calls()
	if len(calls) != 5 || calls[3].Stdin != "in" || f.Argvs()[4] != "coder listing" {
		t.Errorf("calls %+v", calls)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := f.Run(cancelled, Cmd{Name: "coder", Args: []string{"list"}}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v", err)
	}
	if s := (Cmd{Name: "x", Args: []string{"a"}, Env: []string{"SECRET=1"}}).String(); s != "x a" {
		t.Errorf("Cmd.String %q", s)
	}
}
