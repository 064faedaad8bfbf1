package sshx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/testsshd"
)

// testSSHD is a private sshd on 127.0.0.1 for one test.
type testSSHD struct {
	addr    string
	key     string // client private key
	hostPub string // host public key line
	user    string
}

// lockedBuffer is a bytes.Buffer safe for a process writer and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startSSHD starts a private sshd (internal/testsshd) for the test.
func startSSHD(t *testing.T) *testSSHD {
	t.Helper()
	s := testsshd.Start(t)
	return &testSSHD{addr: s.Addr, key: s.Key, hostPub: s.HostPub, user: s.User}
}

// proxyTarget is a target that reaches d through the test binary acting as
// a ProxyCommand; marker is on the proxy's command line.
func (d *testSSHD) proxyTarget(t *testing.T, marker, proxyLog, knownHosts string) lease.Target {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	proxy := "env " + envProxyAddr + "=" + d.addr + " " + envProxyLog + "=" + Quote(proxyLog) + " " + Quote(self) + " " + marker
	return lease.Target{
		User:           d.user,
		Host:           "crabbox-sshx-test-host",
		Port:           22,
		ProxyCommand:   proxy,
		KnownHostsFile: knownHosts,
		ReadyCheck:     "command -v sh >/dev/null && command -v rsync >/dev/null",
	}
}

func (d *testSSHD) extraArgs() []string {
	// -F none: ignore the user's and the system ssh config.
	return []string{"-F", "none", "-i", d.key, "-o", "IdentitiesOnly=yes"}
}

type proc struct {
	pid  int
	argv []string
}

// procs lists processes whose command line contains s.
func procs(t *testing.T, s string) []proc {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("reading /proc: %v", err)
	}
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte(s)) {
			continue
		}
		out = append(out, proc{pid, strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")})
	}
	return out
}

// proxyProcs are the running proxies: the test binary with marker as its
// last argument (ssh clients also carry the marker, inside -o ProxyCommand).
func proxyProcs(t *testing.T, marker string) []proc {
	var out []proc
	for _, p := range procs(t, marker) {
		if p.argv[len(p.argv)-1] == marker {
			out = append(out, p)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fileDigest(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return "absent: " + err.Error()
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// TestRealOpenSSH drives a Session against a private sshd through a
// ProxyCommand and checks the one-tunnel rule: one master, one proxy, no
// ~/.ssh writes.
func TestRealOpenSSH(t *testing.T) {
	d := startSSHD(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	userKnownHosts := filepath.Join(home, ".ssh", "known_hosts")
	before := fileDigest(userKnownHosts)

	base := t.TempDir()
	marker := fmt.Sprintf("crabbox-sshx-proxy-marker-%d-%d", os.Getpid(), time.Now().UnixNano())
	proxyLog := filepath.Join(base, "proxy.log")
	// Spaces in the known_hosts and socket paths exercise ssh config quoting.
	knownHosts := filepath.Join(base, "config dir", "known_hosts.d", "abc123")
	tg := d.proxyTarget(t, marker, proxyLog, knownHosts)
	tmp := filepath.Join(base, "sock tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	var diag lockedBuffer
	s := NewSession(execx.OS{}, tg, SessionOptions{TempDir: tmp, Log: &diag, ExtraArgs: d.extraArgs()})
	s.retryDelay = 200 * time.Millisecond
	defer s.Close()

	var progress int
	if err := s.WaitReady(ctx, 30*time.Second, func(el time.Duration, err error) {
		progress++
		t.Logf("waiting (%s): %v", el, err)
	}); err != nil {
		t.Fatalf("WaitReady: %v\nlog: %s", err, diag.String())
	}
	sock := s.sock
	if !exists(sock) {
		t.Fatalf("control socket %s missing after Open", sock)
	}
	if len(sock)+sshTempSuffix >= maxSocketPath {
		t.Errorf("socket path too long: %s", sock)
	}
	masters := procs(t, "ControlPath="+configPath(sock))
	if len(masters) != 1 {
		t.Fatalf("control masters = %v", masters)
	}
	if err := s.Open(ctx); err != nil { // idempotent
		t.Fatal(err)
	}

	// 1: exit code passthrough.
	var out, errb bytes.Buffer
	code, err := s.Run(ctx, "echo hi; echo oops >&2; exit 3", nil, &out, &errb)
	if err != nil || code != 3 || out.String() != "hi\n" || errb.String() != "oops\n" {
		t.Fatalf("Run = %d, %v, stdout %q, stderr %q", code, err, out.String(), errb.String())
	}
	// 2: stdin.
	out.Reset()
	if code, err := s.Run(ctx, "cat", strings.NewReader("from stdin\n"), &out, nil); err != nil || code != 0 || out.String() != "from stdin\n" {
		t.Fatalf("stdin Run = %d, %v, %q", code, err, out.String())
	}
	// 3: Output.
	if b, err := s.Output(ctx, "printf %s hello"); err != nil || string(b) != "hello" {
		t.Fatalf("Output = %q, %v", b, err)
	}
	// 4: a rendered argv command arrives literally.
	work := filepath.Join(base, "remote work 'dir'")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"a b", "it's", "$(echo pwned)", "`echo pwned`", ""}
	remote := "cd " + Quote(work) + " && " + QuoteArgs(append([]string{"sh", "-c", `pwd; printf '<%s>\n' "$@"`, "sh"}, args...))
	b, err := s.Output(ctx, remote)
	want := work + "\n<a b>\n<it's>\n<$(echo pwned)>\n<`echo pwned`>\n<>\n"
	if err != nil || string(b) != want {
		t.Fatalf("argv command printed %q, %v; want %q", b, err, want)
	}
	// 5: a non-zero Output is an ExitError, not a transport error.
	if _, err := s.Output(ctx, "exit 4"); err == nil || exitcode.Code(err) == exitcode.Transport {
		t.Fatalf("Output exit 4 = %v", err)
	}
	// 6: rsync through RSH rides the same master.
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Fatal("rsync is required")
	}
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f.txt"), []byte("synced"), 0o644); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	rsync := exec.CommandContext(rctx, "rsync", "-a", "-e", s.RSH(), src+"/", Destination(tg)+":"+dst+"/")
	rout, err := rsync.CombinedOutput()
	rcancel()
	if err != nil {
		t.Fatalf("rsync -e %s: %v\n%s", s.RSH(), err, rout)
	}
	if got, err := os.ReadFile(filepath.Join(dst, "f.txt")); err != nil || string(got) != "synced" {
		t.Fatalf("rsync result %q, %v", got, err)
	}

	// One tunnel: one proxy started, one alive, still one master.
	logb, err := os.ReadFile(proxyLog)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(logb), "proxy started"); n != 1 {
		t.Errorf("ProxyCommand started %d times, want 1:\n%s", n, logb)
	}
	if ps := proxyProcs(t, marker); len(ps) != 1 {
		t.Errorf("live proxies = %v, want 1", ps)
	}
	if ms := procs(t, "ControlPath="+configPath(sock)); len(ms) != 1 {
		t.Errorf("control masters = %v", ms)
	}

	// Host key went to the target's file, not ~/.ssh.
	kh, err := os.ReadFile(knownHosts)
	if err != nil {
		t.Fatalf("target known_hosts: %v", err)
	}
	fields := strings.Fields(d.hostPub)
	if !strings.Contains(string(kh), tg.Host+" "+fields[0]+" "+fields[1]) {
		t.Errorf("target known_hosts lacks the host key:\n%s", kh)
	}
	if fi, err := os.Stat(filepath.Dir(knownHosts)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("known_hosts dir: %v, %v", fi, err)
	}

	// Close: master and proxy gone, socket dir removed.
	sockDir := filepath.Dir(sock)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitFor(t, "the control master to exit", 10*time.Second, func() bool {
		return len(procs(t, "ControlPath="+configPath(sock))) == 0
	})
	waitFor(t, "the proxy to exit", 10*time.Second, func() bool { return len(proxyProcs(t, marker)) == 0 })
	if _, err := os.Stat(sockDir); !os.IsNotExist(err) {
		t.Errorf("socket dir still there: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if after := fileDigest(userKnownHosts); after != before {
		t.Errorf("~/.ssh/known_hosts changed: %s -> %s", before, after)
	}
	if strings.Contains(diag.String(), "Permanently added") {
		t.Errorf("LogLevel=ERROR should hide the known_hosts notice; log: %s", diag.String())
	}

	// A new session to the same workspace reuses the recorded host key.
	s2 := NewSession(execx.OS{}, tg, SessionOptions{TempDir: tmp, ExtraArgs: d.extraArgs()})
	defer s2.Close()
	if code, err := s2.Run(ctx, "exit 0", nil, nil, nil); err != nil || code != 0 {
		t.Fatalf("second session Run = %d, %v", code, err)
	}
	// A master that went away (as after ControlPersist's idle timeout) is
	// replaced by the next use instead of silently running unmultiplexed.
	sock2 := s2.sock
	if out, err := exec.CommandContext(ctx, "ssh", "-O", "exit", "-o", "ControlPath="+configPath(sock2), "x").CombinedOutput(); err != nil {
		t.Fatalf("ssh -O exit: %v\n%s", err, out)
	}
	waitFor(t, "the second master's socket to go", 10*time.Second, func() bool { return !exists(sock2) })
	if code, err := s2.Run(ctx, "exit 0", nil, nil, nil); err != nil || code != 0 {
		t.Fatalf("Run after the master left = %d, %v", code, err)
	}
	if !exists(sock2) || len(procs(t, "ControlPath="+configPath(sock2))) != 1 {
		t.Fatal("no new master after the old one left")
	}
	if logb, _ := os.ReadFile(proxyLog); strings.Count(string(logb), "proxy started") != 3 {
		t.Errorf("proxy starts after reopen:\n%s", logb)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second proxy to exit", 10*time.Second, func() bool { return len(proxyProcs(t, marker)) == 0 })
}

// TestRealOpenSSHTransportFailure: a proxy that cannot reach anything is a
// transport error (exit 7) from Open and a timeout (exit 5) from WaitReady.
func TestRealOpenSSHTransportFailure(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Fatal("ssh (openssh-client) is required")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close() // nothing listens there now
	base := t.TempDir()
	d := &testSSHD{addr: dead, key: filepath.Join(base, "nokey"), user: "nobody"}
	marker := fmt.Sprintf("crabbox-sshx-dead-marker-%d-%d", os.Getpid(), time.Now().UnixNano())
	tg := d.proxyTarget(t, marker, filepath.Join(base, "proxy.log"), filepath.Join(base, "kh", "f"))
	var diag lockedBuffer
	s := NewSession(execx.OS{}, tg, SessionOptions{TempDir: base, Log: &diag, ExtraArgs: []string{"-F", "none"}})
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = s.Open(ctx)
	if exitcode.Code(err) != exitcode.Transport || !strings.HasPrefix(err.Error(), "ssh transport to crabbox-sshx-test-host failed: ") {
		t.Fatalf("Open = %v (exit %d)", err, exitcode.Code(err))
	}
	t.Logf("Open error: %v", err)
	if !strings.Contains(err.Error(), "test proxy: dial tcp") {
		t.Errorf("Open error lacks the proxy's own message: %v", err)
	}
	if !strings.Contains(diag.String(), "test proxy:") {
		t.Errorf("proxy diagnostics not logged: %q (error %v)", diag.String(), err)
	}
	s.retryDelay = 100 * time.Millisecond
	err = s.WaitReady(ctx, 1500*time.Millisecond, nil)
	if exitcode.Code(err) != exitcode.NotFound || !strings.Contains(err.Error(), "timed out waiting for SSH on crabbox-sshx-test-host") {
		t.Fatalf("WaitReady = %v (exit %d)", err, exitcode.Code(err))
	}
	t.Logf("WaitReady error: %v", err)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRealOpenSSHChangedHostKey: a host whose key changed after it was
// recorded is refused by Open with a HostKeyError (exit 7) that names the
// new key's fingerprint and the known_hosts file.
func TestRealOpenSSHChangedHostKey(t *testing.T) {
	srv := testsshd.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kh := filepath.Join(t.TempDir(), "known_hosts.d", "host")
	tg := lease.Target{User: srv.User, Host: srv.Host, Port: srv.Port, KnownHostsFile: kh, IdentityFile: srv.Key}
	opts := SessionOptions{TempDir: t.TempDir(), ExtraArgs: []string{"-F", "none"}}
	s := NewSession(execx.OS{}, tg, opts)
	if code, err := s.Run(ctx, "true", nil, nil, nil); err != nil || code != 0 {
		t.Fatalf("first Run = %d, %v", code, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	srv.Restart(t, true)
	s2 := NewSession(execx.OS{}, tg, opts)
	defer s2.Close()
	err := s2.Open(ctx)
	he := AsHostKeyError(err)
	if he == nil || exitcode.Code(err) != exitcode.Transport || !he.Changed {
		t.Fatalf("Open after the host key changed = %v (exit %d)", err, exitcode.Code(err))
	}
	if fp := srv.Fingerprint(t); he.Fingerprint != fp || !strings.Contains(err.Error(), fp) || !strings.Contains(err.Error(), kh) {
		t.Fatalf("error %q lacks the new fingerprint %s or the file %s", err, fp, kh)
	}
	// WaitReady gives up at once: retrying cannot fix a host key.
	start := time.Now()
	if err := s2.WaitReady(ctx, 30*time.Second, nil); AsHostKeyError(err) == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("WaitReady = %v after %s", err, time.Since(start))
	}
}
