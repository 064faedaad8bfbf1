package sshx

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
)

func fakeTarget(t *testing.T) lease.Target {
	tg := coderTarget()
	tg.KnownHostsFile = filepath.Join(t.TempDir(), "cfg", "known_hosts.d", "5b1f0c2a9e7d")
	return tg
}

func newFakeSession(t *testing.T, f *execx.Fake) (*Session, lease.Target) {
	tg := fakeTarget(t)
	s := NewSession(f, tg, SessionOptions{TempDir: t.TempDir()})
	s.retryDelay = time.Millisecond
	t.Cleanup(func() { s.Close() })
	return s, tg
}

func argv(words ...[]string) []string {
	var out []string
	for _, w := range words {
		out = append(out, w...)
	}
	return out
}

func TestSessionFakeArgv(t *testing.T) {
	f := execx.NewFake().
		On("ssh -f -N", execx.Reply{}).
		On("ssh -o", execx.Reply{Stdout: "hi\n"}).
		On("ssh -O exit", execx.Reply{})
	s, tg := newFakeSession(t, f)
	ctx := context.Background()
	dest := Destination(tg)

	var out bytes.Buffer
	for i := 0; i < 3; i++ {
		out.Reset()
		code, err := s.Run(ctx, "echo hi", nil, &out, nil)
		if err != nil || code != 0 || out.String() != "hi\n" {
			t.Fatalf("Run = %d, %v, %q", code, err, out.String())
		}
	}
	sock := s.sock
	if filepath.Base(sock) != "m" || !strings.HasPrefix(filepath.Base(filepath.Dir(sock)), "crabbox-ssh-") {
		t.Fatalf("socket path %q", sock)
	}
	fi, err := os.Stat(filepath.Dir(sock))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket dir: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Dir(tg.KnownHostsFile)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("known_hosts dir not created 0700: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(sock)); !os.IsNotExist(err) {
		t.Fatalf("socket dir not removed: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	calls := f.Calls()
	if len(calls) != 5 {
		t.Fatalf("calls:\n%s", strings.Join(f.Argvs(), "\n"))
	}
	masterTg := tg
	masterTg.ProxyCommand += " 2>>'" + filepath.Join(filepath.Dir(sock), "log") + "'"
	wantOpen := argv([]string{"-f", "-N", "-o", "ControlMaster=yes", "-o", "ControlPersist=60", "-o", "ControlPath=" + sock,
		"-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"},
		BaseArgs(masterTg, Options{ConnectTimeout: 10, ConnectionAttempts: 1}), []string{dest})
	wantRun := argv(aliveArgs(), BaseArgs(tg, Options{}), []string{"-o", "ControlMaster=no", "-o", "ControlPath=" + sock, dest, "--", "echo hi"})
	wantClose := []string{"-O", "exit", "-o", "ControlPath=" + sock, dest}
	for i, want := range [][]string{wantOpen, wantRun, wantRun, wantRun, wantClose} {
		if calls[i].Name != "ssh" || !slices.Equal(calls[i].Args, want) {
			t.Errorf("call %d:\n got %q\nwant %q", i, calls[i].Args, want)
		}
	}
	// Spot-check the literal master argv once more, in order.
	if got := strings.Join(calls[0].Args[:9], " "); got != "-f -N -o ControlMaster=yes -o ControlPersist=60 -o ControlPath="+sock+" -o" {
		t.Errorf("master argv starts %q", got)
	}
	if !slices.Contains(calls[0].Args, "ConnectionAttempts=1") || !slices.Contains(calls[0].Args, "ConnectTimeout=10") {
		t.Errorf("master argv %q", calls[0].Args)
	}
	for i, c := range calls {
		a := c.Argv()
		if strings.Contains(a, "~/.ssh/known_hosts") || strings.Contains(a, "/.ssh/") {
			t.Errorf("call %d mentions ~/.ssh: %s", i, a)
		}
		if i < 4 && (!slices.Contains(c.Args, "ForwardAgent=no") || !slices.Contains(c.Args, "ForwardX11=no") || !slices.Contains(c.Args, "ForwardX11Trusted=no")) {
			t.Errorf("call %d lacks forwarding off: %s", i, a)
		}
		if i < 4 && !slices.Contains(c.Args, "UserKnownHostsFile="+tg.KnownHostsFile) {
			t.Errorf("call %d lacks the target known_hosts: %s", i, a)
		}
	}
}

func TestSessionArgsAndRSH(t *testing.T) {
	f := execx.NewFake().On("ssh -f -N", execx.Reply{}).On("ssh -O exit", execx.Reply{})
	s, tg := newFakeSession(t, f)
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := argv(aliveArgs(), BaseArgs(tg, Options{}), []string{"-o", "ControlMaster=no", "-o", "ControlPath=" + s.sock})
	if got := s.Args(); !slices.Equal(got, want) {
		t.Errorf("Args = %q\nwant %q", got, want)
	}
	rsh := s.RSH()
	wantRSH := "ssh -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -o ForwardAgent=no -o ForwardX11=no -o ForwardX11Trusted=no -o BatchMode=yes -o ConnectTimeout=10 -o ConnectionAttempts=3 " +
		"-o ServerAliveInterval=15 -o ServerAliveCountMax=2 -p 22 -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=" + tg.KnownHostsFile + " " +
		`-o 'ProxyCommand=''coder'' ssh --stdio --wait ''yes'' ''alice/crabbox-blue-lobster-8d41ce''' -o LogLevel=ERROR ` +
		"-o ControlMaster=no -o ControlPath=" + s.sock
	if rsh != wantRSH {
		t.Errorf("RSH\n got %s\nwant %s", rsh, wantRSH)
	}
	if strings.Contains(rsh, "ForwardAgent=yes") || strings.Contains(rsh, "/.ssh/") {
		t.Errorf("RSH %s", rsh)
	}
}

func TestSessionExitCodes(t *testing.T) {
	f := execx.NewFake().
		On("ssh -f -N", execx.Reply{}).
		On("ssh -o", execx.Reply{Stderr: "boom\n", ExitCode: 3}, execx.Reply{Stderr: "kex_exchange_identification: Connection closed by remote host\n", ExitCode: 255}).
		On("ssh -O exit", execx.Reply{})
	s, tg := newFakeSession(t, f)
	var errb bytes.Buffer
	code, err := s.Run(context.Background(), "exit 3", nil, nil, &errb)
	if code != 3 || err != nil || errb.String() != "boom\n" {
		t.Fatalf("remote exit 3: code %d err %v stderr %q", code, err, errb.String())
	}
	code, err = s.Run(context.Background(), "true", nil, nil, nil)
	if code != 255 || exitcode.Code(err) != exitcode.Transport {
		t.Fatalf("ssh 255: code %d err %v (exit %d)", code, err, exitcode.Code(err))
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "ssh transport to "+tg.Host+" failed: ") || !strings.Contains(msg, "Connection closed") {
		t.Errorf("transport error %q", msg)
	}
}

func TestSessionOutput(t *testing.T) {
	f := execx.NewFake().
		On("ssh -f -N", execx.Reply{}).
		On("ssh -o", execx.Reply{Stdout: "abc\n"}, execx.Reply{Stderr: "no such file\n", ExitCode: 2}).
		On("ssh -O exit", execx.Reply{})
	s, _ := newFakeSession(t, f)
	out, err := s.Output(context.Background(), "cat f")
	if err != nil || string(out) != "abc\n" {
		t.Fatalf("Output = %q, %v", out, err)
	}
	_, err = s.Output(context.Background(), "cat g")
	var ee *execx.ExitError
	if !errors.As(err, &ee) || ee.Code != 2 || ee.Output != "no such file" {
		t.Fatalf("Output error = %#v", err)
	}
}

func TestSessionOpenFailureRetries(t *testing.T) {
	f := execx.NewFake().
		On("ssh -f -N",
			execx.Reply{Stderr: "ssh: connect to host x: Connection refused\n", ExitCode: 255},
			execx.Reply{}).
		On("ssh -O exit", execx.Reply{})
	var logb bytes.Buffer
	tg := fakeTarget(t)
	s := NewSession(f, tg, SessionOptions{TempDir: t.TempDir(), Log: &logb})
	defer s.Close()
	err := s.Open(context.Background())
	if exitcode.Code(err) != exitcode.Transport || !strings.Contains(err.Error(), "Connection refused") {
		t.Fatalf("Open error = %v", err)
	}
	if !strings.Contains(logb.String(), "Connection refused") {
		t.Errorf("log writer got %q", logb.String())
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatalf("retry Open: %v", err)
	}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Calls()); n != 2 {
		t.Errorf("Open calls = %d:\n%s", n, strings.Join(f.Argvs(), "\n"))
	}
}

func TestSessionWaitReady(t *testing.T) {
	f := execx.NewFake().
		On("ssh -f -N", execx.Reply{Stderr: "agent not ready\n", ExitCode: 255}, execx.Reply{}).
		On("ssh -o", execx.Reply{Stderr: "git: not found\n", ExitCode: 1}, execx.Reply{}).
		On("ssh -O exit", execx.Reply{})
	s, tg := newFakeSession(t, f)
	var seen []string
	err := s.WaitReady(context.Background(), 10*time.Second, func(elapsed time.Duration, lastErr error) {
		seen = append(seen, lastErr.Error())
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || !strings.Contains(seen[0], "agent not ready") || !strings.Contains(seen[1], "ready check exited 1: git: not found") {
		t.Errorf("progress saw %q", seen)
	}
	var runs int
	for _, c := range f.Calls() {
		if c.Args[0] == "-o" {
			runs++
			if c.Args[len(c.Args)-1] != tg.ReadyCheck {
				t.Errorf("ready check argv %q", c.Args)
			}
		}
	}
	if runs != 2 {
		t.Errorf("ready check runs = %d", runs)
	}
}

func TestSessionWaitReadyTimeout(t *testing.T) {
	f := execx.NewFake().
		On("ssh -f -N", execx.Reply{}).
		On("ssh -o", execx.Reply{ExitCode: 1}).
		On("ssh -O exit", execx.Reply{})
	s, tg := newFakeSession(t, f)
	s.retryDelay = 5 * time.Millisecond
	var n int
	err := s.WaitReady(context.Background(), 60*time.Millisecond, func(time.Duration, error) { n++ })
	if exitcode.Code(err) != exitcode.NotFound {
		t.Fatalf("WaitReady = %v (exit %d)", err, exitcode.Code(err))
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "timed out waiting for SSH on "+tg.Host+" after 60ms") || !strings.Contains(msg, "next_action=") || !strings.Contains(msg, "ready check exited 1") {
		t.Errorf("timeout error %q", msg)
	}
	if n == 0 {
		t.Error("progress never called")
	}
	// The master is started once even though the ready check kept failing.
	var opens int
	for _, c := range f.Calls() {
		if c.Args[0] == "-f" {
			opens++
		}
	}
	if opens != 1 {
		t.Errorf("opens = %d", opens)
	}
}

func TestSessionWaitReadyCancel(t *testing.T) {
	f := execx.NewFake().On("ssh -f -N", execx.Reply{ExitCode: 255}).On("ssh -O exit", execx.Reply{})
	s, _ := newFakeSession(t, f)
	s.retryDelay = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	err := s.WaitReady(ctx, time.Hour, func(time.Duration, error) { cancel() })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitReady = %v", err)
	}
}

func TestSessionCloseNeverOpened(t *testing.T) {
	f := execx.NewFake()
	s := NewSession(f, fakeTarget(t), SessionOptions{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(f.Calls()) != 0 {
		t.Errorf("calls %q", f.Argvs())
	}
}

func TestSessionRequiresKnownHosts(t *testing.T) {
	f := execx.NewFake()
	tg := coderTarget()
	tg.KnownHostsFile = ""
	s := NewSession(f, tg, SessionOptions{TempDir: t.TempDir()})
	if err := s.Open(context.Background()); err == nil {
		t.Fatal("Open without known_hosts file succeeded")
	}
	if len(f.Calls()) != 0 {
		t.Errorf("calls %q", f.Argvs())
	}
}

func TestSocketDirShort(t *testing.T) {
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 90))
	if err := os.MkdirAll(long, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := makeSocketDir(long)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if !strings.HasPrefix(dir, "/tmp/crabbox-ssh-") || len(filepath.Join(dir, "m"))+sshTempSuffix >= maxSocketPath {
		t.Errorf("socket dir %q", dir)
	}
}
