package sshx

import (
	"context"
	"fmt"
	"os"
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

// masterPID is the pid of the one master process for sock.
func masterPID(t *testing.T, sock string) int {
	t.Helper()
	ms := procs(t, "ControlPath="+configPath(sock))
	var pids []int
	for _, p := range ms {
		if p.argv[0] == "ssh" && len(p.argv) > 1 && p.argv[1] == "-f" {
			pids = append(pids, p.pid)
		}
	}
	if len(pids) != 1 {
		t.Fatalf("masters for %s: %v", sock, ms)
	}
	return pids[0]
}

// persistRig is a machine behind a logging ProxyCommand (the sshd d) with
// a persistent-master option set: tg's ControlKey is "test:machine-1",
// masterDir is under base, proxies counts the proxy starts.
type persistRig struct {
	tg        lease.Target
	opts      SessionOptions
	masterDir string
	proxies   func() int
}

func newPersistRig(t *testing.T, d *testSSHD, persist time.Duration) persistRig {
	t.Helper()
	base := t.TempDir()
	marker := fmt.Sprintf("crabbox-persist-marker-%d-%d", os.Getpid(), time.Now().UnixNano())
	proxyLog := filepath.Join(base, "proxy.log")
	tg := d.proxyTarget(t, marker, proxyLog, filepath.Join(base, "kh", "known_hosts"))
	tg.ControlKey = "test:machine-1"
	masterDir := filepath.Join(base, "masters")
	return persistRig{
		tg: tg, masterDir: masterDir,
		opts: SessionOptions{Persist: persist, MasterDir: masterDir, ExtraArgs: d.extraArgs()},
		proxies: func() int {
			b, _ := os.ReadFile(proxyLog)
			return strings.Count(string(b), "proxy started")
		},
	}
}

// TestPersistentMasterRealOpenSSH: a persistent master survives its
// session's Close (and is not in crabbox's process group), the next
// session attaches to it without a new proxy, a master recorded for
// another machine is never used, Shutdown ends it, and an idle master
// ends by itself after Persist.
func TestPersistentMasterRealOpenSSH(t *testing.T) {
	d := startSSHD(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rig := newPersistRig(t, d, 3*time.Second)
	tg, opts, masterDir, proxies := rig.tg, rig.opts, rig.masterDir, rig.proxies

	s1 := NewSession(execx.OS{}, tg, opts)
	if err := s1.WaitReady(ctx, 30*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	sock := s1.sock
	if !strings.HasPrefix(sock, masterDir) {
		t.Fatalf("socket %s not under the master dir %s", sock, masterDir)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v %v", sock, fi.Mode(), err)
	}
	if di, err := os.Stat(filepath.Dir(sock)); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("socket dir: %v %v", di.Mode(), err)
	}
	pid := masterPID(t, sock)
	if pgid, err := syscall.Getpgid(pid); err != nil || pgid == syscall.Getpgrp() {
		t.Errorf("master %d in crabbox's process group (%d, %v)", pid, pgid, err)
	}
	if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); !strings.Contains(string(b), "ControlPersist=3\x00") {
		t.Errorf("master argv %q lacks ControlPersist=3", b)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	if !exists(sock) {
		t.Fatal("Close removed the persistent socket")
	}

	// The next process attaches: no new proxy, same master.
	s2 := NewSession(execx.OS{}, tg, opts)
	if !s2.Attach(ctx) {
		t.Fatal("no attach to the live master")
	}
	out, err := s2.Output(ctx, "echo warm")
	if err != nil || string(out) != "warm\n" {
		t.Fatalf("Output %q %v", out, err)
	}
	if n := proxies(); n != 1 {
		t.Errorf("proxies started = %d, want 1", n)
	}
	if masterPID(t, sock) != pid {
		t.Error("a new master replaced the live one")
	}
	s2.Close()

	// Another machine (a recreated workspace: new ID) never gets it.
	other := tg
	other.ControlKey = "test:machine-2"
	s3 := NewSession(execx.OS{}, other, opts)
	if s3.Attach(ctx) {
		t.Fatal("attached to another machine's master")
	}
	s3.Close()

	// Shutdown ends the master and removes the socket.
	s4 := NewSession(execx.OS{}, tg, opts)
	if err := s4.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if exists(sock) {
		t.Error("socket left after Shutdown")
	}
	waitFor(t, "master exit after Shutdown", 10*time.Second, func() bool { return syscall.Kill(pid, 0) != nil })

	// An idle master ends by itself after Persist (3 s), within +5 s.
	s5 := NewSession(execx.OS{}, tg, opts)
	if err := s5.Open(ctx); err != nil {
		t.Fatal(err)
	}
	pid5 := masterPID(t, sock)
	s5.Close()
	start := time.Now()
	waitFor(t, "idle master exit", 8*time.Second, func() bool { return syscall.Kill(pid5, 0) != nil })
	t.Logf("idle master ended %s after its last session", time.Since(start).Round(100*time.Millisecond))

	// The dead master's socket is cleared, not trusted.
	s6 := NewSession(execx.OS{}, tg, opts)
	if s6.Attach(ctx) {
		t.Fatal("attached to an expired master")
	}
	if exists(sock) {
		t.Error("stale socket left")
	}
}

// TestPersistentSocketFallback: a master dir too deep for sun_path puts
// the socket in a private crabbox-<uid> dir under TempDir; a dir there
// that is not private is refused.
func TestPersistentSocketFallback(t *testing.T) {
	deep := filepath.Join(t.TempDir(), strings.Repeat("d", 90))
	tmp, err := os.MkdirTemp("/tmp", "cbx")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	tg := fakeTarget(t)
	tg.ControlKey = "coder:ws1"
	s := NewSession(execx.NewFake(), tg, SessionOptions{Persist: time.Minute, MasterDir: deep, TempDir: tmp})
	if err := s.persistentPathsLocked(); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(tmp, "crabbox-"+strconv.Itoa(os.Getuid()))
	if filepath.Dir(s.sock) != want || len(s.sock)+sshTempSuffix >= maxSocketPath {
		t.Fatalf("socket %s; want it in %s", s.sock, want)
	}
	if !strings.HasPrefix(s.dir, deep) {
		t.Errorf("record dir %s not under the master dir", s.dir)
	}
	// A shared (0755) dir of that name is not used.
	if err := os.Chmod(want, 0o755); err != nil {
		t.Fatal(err)
	}
	s2 := NewSession(execx.NewFake(), tg, SessionOptions{Persist: time.Minute, MasterDir: deep, TempDir: tmp})
	if err := s2.persistentPathsLocked(); err == nil && strings.HasPrefix(s2.sock, want) {
		t.Fatalf("socket %s in a non-private dir", s2.sock)
	}
}

// TestPinnedSessionNeverConnectsByItself: a session attached to a live
// persistent master (the warm fast path) uses that master only. When the
// master ends under it (removed socket, or killed with its socket left),
// a command fails as a transport error and no proxy starts: the
// ProxyCommand goes by name, which may name another machine by now.
// After Shutdown the session opens a master of its own again (positive
// control: the proxy count rises).
func TestPinnedSessionNeverConnectsByItself(t *testing.T) {
	d := startSSHD(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			rig := newPersistRig(t, d, 60*time.Second)
			tg, opts, proxies := rig.tg, rig.opts, rig.proxies
			s1 := NewSession(execx.OS{}, tg, opts)
			if err := s1.WaitReady(ctx, 30*time.Second, nil); err != nil {
				t.Fatal(err)
			}
			pid := masterPID(t, s1.sock)
			s1.Close()

			s2 := NewSession(execx.OS{}, tg, opts)
			if !s2.Attach(ctx) {
				t.Fatal("no attach to the live master")
			}
			if out, err := s2.Output(ctx, "echo warm"); err != nil || string(out) != "warm\n" {
				t.Fatalf("Output over the master: %q %v", out, err)
			}
			syscall.Kill(pid, sig)
			waitFor(t, "master exit", 10*time.Second, func() bool { return syscall.Kill(pid, 0) != nil })
			_, err := s2.Output(ctx, "echo again")
			if err == nil || exitcode.Code(err) != exitcode.Transport {
				t.Fatalf("a command after the pinned master ended: err %v (exit %d), want a transport error", err, exitcode.Code(err))
			}
			if n := proxies(); n != 1 {
				t.Fatalf("proxies started = %d, want 1: the pinned session connected by itself", n)
			}
			if err := s2.Shutdown(); err != nil {
				t.Fatal(err)
			}
			if out, err := s2.Output(ctx, "echo fresh"); err != nil || string(out) != "fresh\n" {
				t.Fatalf("Output after Shutdown: %q %v", out, err)
			}
			if n := proxies(); n != 2 {
				t.Errorf("proxies started = %d after Shutdown, want 2", n)
			}
			s2.Shutdown()
		})
	}
}

// TestShutdownEndsAMasterThatDoesNotAnswer: a persistent master that no
// longer answers `ssh -O exit` (here SIGSTOPped; in the lab, one dying
// with its deleted workspace) is still ended by Shutdown (found by its
// argv), so none outlives its lease.
func TestShutdownEndsAMasterThatDoesNotAnswer(t *testing.T) {
	d := startSSHD(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rig := newPersistRig(t, d, 60*time.Second)
	s := NewSession(execx.OS{}, rig.tg, rig.opts)
	if err := s.WaitReady(ctx, 30*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	pid := masterPID(t, s.sock)
	syscall.Kill(pid, syscall.SIGSTOP)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	_ = s.Shutdown() // `ssh -O exit` times out on the stopped master
	waitFor(t, "the unanswering master's exit", 10*time.Second, func() bool {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err != nil || strings.Contains(string(st), ") Z ")
	})
}
