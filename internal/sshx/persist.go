package sshx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/fsx"
)

// A persistent master (SessionOptions.Persist) is one control master per
// machine shared by consecutive crabbox processes. It lives in
// <MasterDir>/<key hash>/ (0700): the socket m (0600, made by ssh), the
// master's log, a lock file (one start at a time) and record.json (which
// machine the master is for). The key hash covers the target's ControlKey
// (provider and machine ID) and everything that shapes the connection
// (user, host, port, known_hosts, proxy, identity), so a machine recreated
// under the same name (a new ID) never finds the old master. When that
// directory is too deep for a unix socket path, the socket goes to a
// private crabbox-<uid> directory under TempDir (or /tmp) with the same
// hash as its name; the record names it.

// masterRecord is record.json.
type masterRecord struct {
	Key     string    `json:"key"`
	Socket  string    `json:"socket"`
	Started time.Time `json:"started"`
}

func (s *Session) persistent() bool { return s.persist > 0 }

// Persistent reports whether the session's master outlives the process.
func (s *Session) Persistent() bool { return s.persistent() }

// persistSeconds is d as ControlPersist seconds (at least 1).
func persistSeconds(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return strconv.FormatInt(secs, 10)
}

// masterHash names t's persistent master.
func (s *Session) masterHash() string {
	sum := sha256.Sum256([]byte("crabbox-master-v1\x00" + s.t.ControlKey + "\x00" + poolKey(s.t) + "\x00" + strconv.Itoa(port(s.t))))
	return hex.EncodeToString(sum[:8])
}

// persistentPathsLocked sets s.dir and s.sock for the persistent master.
func (s *Session) persistentPathsLocked() error {
	h := s.masterHash()
	dir := filepath.Join(s.masterDir, h)
	if err := fsx.EnsurePrivateDir(dir); err != nil {
		return fmt.Errorf("creating ssh master dir: %w", err)
	}
	sock := filepath.Join(dir, "m")
	if len(sock)+sshTempSuffix >= maxSocketPath {
		var err error
		if sock, err = shortSocket(s.tmp, h); err != nil {
			return err
		}
	}
	s.dir, s.sock = dir, sock
	return nil
}

// shortSocket is the fallback socket path <base>/crabbox-<uid>/<hash> in a
// directory only this user may use: it must be a real directory (not a
// link) owned by this user with mode 0700, else the next base is tried.
func shortSocket(tmp, h string) (string, error) {
	uid := os.Getuid()
	for _, base := range []string{tmp, "/tmp"} {
		dir := filepath.Join(base, "crabbox-"+strconv.Itoa(uid))
		sock := filepath.Join(dir, h)
		if len(sock)+sshTempSuffix >= maxSocketPath {
			continue
		}
		if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
			continue
		}
		if !privateDir(dir, uid) {
			continue
		}
		return sock, nil
	}
	return "", fmt.Errorf("no directory short enough and private for an ssh control socket (TempDir %q)", tmp)
}

func (s *Session) recordPath() string { return filepath.Join(s.dir, "record.json") }

// writeRecord notes which machine the master at s.sock is for (best
// effort: without it the master is simply not reused).
func (s *Session) writeRecord() {
	b, err := json.Marshal(masterRecord{Key: s.t.ControlKey, Socket: s.sock, Started: time.Now().UTC()})
	if err == nil {
		_ = fsx.WriteFileAtomic(s.recordPath(), b, 0o600)
	}
}

// killMaster ends the ssh master processes serving s.sock (found by
// their argv in /proc, Linux; elsewhere nothing is done): for a master
// that did not answer `ssh -O exit` (dying, or wedged on a dead
// connection), so none outlives a Shutdown. Only this user's processes
// can be signalled, and only a master's argv names the socket, which is
// in crabbox's private directory.
func (s *Session) killMaster() {
	want := []byte("ControlPath=" + configPath(s.sock) + "\x00")
	start := []byte(s.ssh + "\x00-f\x00-N\x00")
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		argv, err := os.ReadFile(p)
		if err != nil || !bytes.HasPrefix(argv, start) || !bytes.Contains(argv, want) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil || pid <= 1 {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		_ = syscall.Kill(pid, syscall.SIGCONT) // a stopped one takes it too
	}
}

// recordMatches reports whether record.json names this machine and socket.
func (s *Session) recordMatches() bool {
	b, err := os.ReadFile(s.recordPath())
	if err != nil {
		return false
	}
	var r masterRecord
	if json.Unmarshal(b, &r) != nil {
		return false
	}
	return r.Key == s.t.ControlKey && r.Socket == s.sock
}

// attachLocked uses a live persistent master for this machine: true when
// a master listens on the socket and its record names this machine. A
// socket that does not answer is removed; a master recorded for another
// machine (or with no record) is ended first. Called with the lock held.
//
// The check is a connect to the socket (what `ssh -O check` starts with),
// not a program: a warm run's budget is a few tens of milliseconds. Only
// a master makes the socket (its directory is private); whether its
// connection still reaches the machine the first round trip shows, and a
// pinned session never falls back to a connection of its own.
func (s *Session) attachLocked(pin bool) bool {
	if s.open && exists(s.sock) {
		return true
	}
	if !exists(s.sock) {
		return false
	}
	if !listening(s.sock) {
		s.forgetLocked() // dead master (workspace stopped, connection lost): stale socket
		return false
	}
	if !s.recordMatches() {
		s.exitMasterLocked()
		s.forgetLocked()
		return false
	}
	s.open, s.sockSeen = true, true
	if pin {
		s.pinned = true
	}
	if fi, err := os.Stat(s.logPath()); err == nil {
		s.logDone = fi.Size() // the earlier processes' diagnostics are theirs
	}
	return true
}

// Attach uses a live persistent master for the session's machine without
// starting one: true when one answers (the session is then open and
// pinned to that master: no later call of it starts a connection of its
// own until Shutdown). A dead
// or mismatched master is cleared away and false returned, as it is for a
// session that does not persist.
func (s *Session) Attach(ctx context.Context) bool {
	if !s.persistent() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		if err := s.persistentPathsLocked(); err != nil {
			return false
		}
	}
	unlock, err := fsx.LockContext(ctx, filepath.Join(s.dir, "lock"), nil)
	if err != nil {
		return false
	}
	defer unlock()
	return s.attachLocked(true)
}

// pinnedGone is the error of a pinned session whose master ended.
func (s *Session) pinnedGone() error {
	return exitcode.Errorf(exitcode.Transport, "the persistent ssh connection to %s ended", s.t.Host)
}

// Shutdown ends the session's master, a persistent one included (whether
// or not this process started or used it), and removes its socket: for a
// machine about to be stopped, deleted or reclaimed, so no master
// outlives its lease. For a session that does not persist it is Close.
func (s *Session) Shutdown() error {
	if !s.persistent() {
		return s.Close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		if err := s.persistentPathsLocked(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	unlock, err := fsx.LockContext(ctx, filepath.Join(s.dir, "lock"), nil)
	if err != nil {
		return fmt.Errorf("ssh master lock: %w", err)
	}
	defer unlock()
	return s.exitLocked()
}

// exitMasterLocked asks the master at s.sock to exit (bounded).
func (s *Session) exitMasterLocked() {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_, _ = s.r.Run(ctx, execx.Cmd{Name: s.ssh,
		Args:    []string{"-O", "exit", "-o", "ControlPath=" + configPath(s.sock), Destination(s.t)},
		Timeout: closeTimeout})
}

// forgetLocked removes the persistent socket and record.
func (s *Session) forgetLocked() {
	_ = os.Remove(s.sock)
	_ = os.Remove(s.recordPath())
	s.open, s.sockSeen = false, false
}
