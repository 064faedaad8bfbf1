package sshx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/fsx"
	"github.com/crabbox-dev/crabbox/internal/lease"
)

const (
	// masterStartTimeout bounds starting the control master (proxy start,
	// key exchange, authentication).
	masterStartTimeout = 60 * time.Second
	// masterPersist is the master's ControlPersist, in seconds. Close ends
	// the master explicitly; this only matters when crabbox dies without
	// running Close (SIGKILL, crash): the orphaned master and its proxy then
	// exit by themselves after 60 s without a client (only the empty
	// crabbox-ssh-* directory is left in TempDir).
	masterPersist = "60"
	// masterAliveInterval and masterAliveCount are the master's
	// keepalives: a tunnel that stops answering is given up after
	// interval x count seconds.
	masterAliveInterval = "5"
	masterAliveCount    = "3"
	closeTimeout        = 10 * time.Second
	// readyRetryDelay is the pause between failed ready checks.
	readyRetryDelay = 2 * time.Second
	// maxSocketPath keeps the control socket path (plus the 17 bytes of
	// the ".<random>" temporary name ssh binds first) under sun_path's
	// limit (104 on macOS, 108 on Linux).
	maxSocketPath = 100
	sshTempSuffix = 17
	tailBytes     = 4096
)

// SessionOptions configure a Session.
type SessionOptions struct {
	// SSH is the ssh program; "ssh" when empty.
	SSH string
	// TempDir is where the private control-socket directory is made;
	// os.TempDir() when empty.
	TempDir string
	// Log, when set, receives the master's and the proxy's diagnostics
	// (they are first written to a file in the socket directory, then
	// copied here after a failed start, after a transport failure and on
	// Close).
	Log io.Writer
	// ExtraArgs are added after BaseArgs to the master's argv and to Args()
	// (not to `ssh -O exit`); tests use them for -i <key> -o IdentitiesOnly=yes
	// -F none. ssh keeps the first value of an option, so they cannot
	// override BaseArgs.
	ExtraArgs []string
	// Persist, when positive, keeps the control master of a target with a
	// ControlKey up for this long after its last session
	// (ControlPersist=<seconds>), so the next crabbox process for the same
	// machine uses it instead of opening a tunnel (see persist.go). Close
	// then lets the master go instead of ending it; Shutdown ends it.
	Persist time.Duration
	// MasterDir is where persistent masters live (<state>/ssh/masters);
	// persistence is off without it.
	MasterDir string
}

// Session is one OpenSSH control master over one ProxyCommand, shared by
// every ssh and rsync invocation of a crabbox process, so a process opens
// one tunnel however many steps it runs (docs/providers/coder.md, SSH). The
// zero value is not usable; call NewSession. Its methods are safe for
// concurrent use. Always Close it.
type Session struct {
	r     execx.Runner
	t     lease.Target
	ssh   string
	tmp   string
	log   io.Writer
	extra []string

	// retryDelay is the pause between ready checks (tests shorten it).
	retryDelay time.Duration

	persist   time.Duration // > 0: a persistent master (persist.go)
	masterDir string

	mu       sync.Mutex
	dir      string // private socket dir ("" before the first Open)
	sock     string // control socket path
	open     bool   // the master was started
	sockSeen bool   // the socket existed right after the start
	logDone  int64  // bytes of the log file already copied to log
	// pinned: the session attached to a live persistent master (Attach)
	// and may use that master only, never a connection of its own: the
	// ProxyCommand reaches the machine by name, and the name may belong
	// to another machine by now (a workspace deleted and recreated).
	// Shutdown ends the pin with the master.
	pinned bool
}

// NewSession returns a Session for t. Nothing runs until Open (or Run,
// Output, WaitReady).
func NewSession(r execx.Runner, t lease.Target, o SessionOptions) *Session {
	s := &Session{r: r, t: t, ssh: o.SSH, tmp: o.TempDir, log: o.Log,
		extra: append([]string(nil), o.ExtraArgs...), retryDelay: readyRetryDelay}
	if o.Persist > 0 && o.MasterDir != "" && t.ControlKey != "" {
		s.persist, s.masterDir = o.Persist, o.MasterDir
	}
	if s.ssh == "" {
		s.ssh = "ssh"
	}
	if s.tmp == "" {
		s.tmp = os.TempDir()
	}
	return s
}

// Target returns the session's target.
func (s *Session) Target() lease.Target { return s.t }

// Open starts the control master once:
//
//	ssh -f -N -o ControlMaster=yes -o ControlPersist=60 -o ControlPath=<sock> <BaseArgs: timeout 10, 1 attempt> <dest>
//
// The socket lives in a private 0700 directory (os.MkdirTemp, prefix
// crabbox-ssh-) so concurrent crabbox processes never share a master. Open
// is idempotent; after a failed Open a later Open tries again, and if the
// master has gone away (its socket vanished) Open starts a new one. A
// failure is a transport error (exit code 7).
func (s *Session) Open(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.openLocked(ctx)
}

func (s *Session) openLocked(ctx context.Context) error {
	if s.open {
		if !s.sockSeen || exists(s.sock) {
			return nil
		}
		s.open = false // master exited (idle timeout, killed): start a new one
	}
	if s.pinned {
		return s.pinnedGone()
	}
	if s.t.KnownHostsFile == "" {
		return fmt.Errorf("ssh target %s has no known_hosts file", s.t.Host)
	}
	if err := EnsureKnownHostsDir(s.t); err != nil {
		return err
	}
	if s.dir == "" {
		if s.persistent() {
			if err := s.persistentPathsLocked(); err != nil {
				return err
			}
		} else {
			dir, err := makeSocketDir(s.tmp)
			if err != nil {
				return err
			}
			s.dir, s.sock = dir, filepath.Join(dir, "m")
		}
	}
	persistFor := masterPersist
	logFlags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	if s.persistent() {
		// One master per machine across processes: the lock keeps two
		// processes from starting two (the second would find the socket
		// taken and keep a plain connection open forever).
		unlock, err := fsx.LockContext(ctx, filepath.Join(s.dir, "lock"), nil)
		if err != nil {
			return fmt.Errorf("ssh master lock: %w", err)
		}
		defer unlock()
		if s.attachLocked(false) {
			return nil
		}
		persistFor = persistSeconds(s.persist)
		logFlags |= os.O_TRUNC // a new master: the old one's log is done
		s.logDone = 0
	}
	_ = os.Remove(s.sock) // a stale socket would make ssh refuse to listen
	logf, err := os.OpenFile(s.logPath(), logFlags, 0o600)
	if err != nil {
		return fmt.Errorf("ssh master log: %w", err)
	}
	defer logf.Close()
	var from int64
	if fi, err := logf.Stat(); err == nil {
		from = fi.Size()
	}
	args := []string{"-f", "-N",
		"-o", "ControlMaster=yes",
		"-o", "ControlPersist=" + persistFor,
		"-o", "ControlPath=" + configPath(s.sock)}
	// The master owns the connection every session and rsync shares: it
	// probes faster than BaseArgs' 15 s x 2 so a stalled tunnel ends
	// within ~15 s and the caller's retry gets a new one.
	args = append(args, aliveArgs()...)
	args = append(args, BaseArgs(s.masterTarget(), Options{ConnectTimeout: 10, ConnectionAttempts: 1})...)
	args = append(args, s.extra...)
	args = append(args, Destination(s.t))
	_, err = s.r.Run(ctx, execx.Cmd{
		Name: s.ssh, Args: args,
		// ssh runs the ProxyCommand with $SHELL -c; the command is POSIX-quoted.
		Env:         []string{"SHELL=/bin/sh"},
		Passthrough: true, // the background master keeps stderr: a file, not a pipe
		Stderr:      logf,
		Timeout:     masterStartTimeout,
	})
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			s.flushLog()
			return cerr
		}
		diag := s.readLog(from)
		detail := execx.LastLines(diag)
		s.flushLog()
		var te *execx.TimeoutError
		var ee *execx.ExitError
		switch {
		case errors.As(err, &te):
			detail = joinDetail(fmt.Sprintf("no connection within %s", masterStartTimeout), detail)
		case detail != "":
		case errors.As(err, &ee):
			detail = fmt.Sprintf("ssh exited %d", ee.Code)
		default:
			detail = err.Error()
		}
		return transportError(s.t, detail, diag)
	}
	s.open, s.sockSeen = true, exists(s.sock)
	if s.persistent() {
		s.writeRecord()
	}
	return nil
}

// Args are the ssh options for every use after Open, rsync's -e included:
// BaseArgs + -o ControlMaster=no -o ControlPath=<sock> (+ ExtraArgs). They
// go through the master; should it be gone, ssh connects on its own.
func (s *Session) Args() []string {
	s.mu.Lock()
	sock := s.sock
	s.mu.Unlock()
	if sock == "" {
		// Not opened yet: the path is unknown, so do not multiplex.
		sock = "none"
	} else {
		sock = configPath(sock)
	}
	// The master's keepalives first: should the master be gone and ssh
	// connect on its own, a stalled connection still ends within seconds.
	args := aliveArgs()
	if s.pinned {
		// Should the master be gone, ssh would connect on its own through
		// the ProxyCommand, by name: a pinned session fails instead (ssh
		// keeps the first value of an option).
		args = append(args, "-o", "ProxyCommand=false")
	}
	args = append(args, BaseArgs(s.t, Options{})...)
	args = append(args, "-o", "ControlMaster=no", "-o", "ControlPath="+sock)
	return append(args, s.extra...)
}

// aliveArgs are the tunnel's keepalive options (ssh keeps the first value
// of an option, so they win over BaseArgs' 15 s x 2).
func aliveArgs() []string {
	return []string{"-o", "ServerAliveInterval=" + masterAliveInterval, "-o", "ServerAliveCountMax=" + masterAliveCount}
}

// RSH is the remote shell for rsync -e: the ssh program and Args(), quoted
// for rsync's own -e splitting. rsync splits on spaces and honours single
// quotes, but a single quote inside them is written doubled; it does not
// understand the backslash form Quote uses:
//
//	-o 'ProxyCommand=''coder'' ssh --stdio ...'
//
// Call it after Open so it carries the control socket.
func (s *Session) RSH() string {
	words := append([]string{s.ssh}, s.Args()...)
	for i, w := range words {
		words[i] = rsyncQuote(w)
	}
	return strings.Join(words, " ")
}

// Run runs remote (a shell command line, see remotecmd.Render) on the target
// through the master, opening the session first if needed:
//
//	ssh <Args()> <dest> -- <remote>
//
// It returns the remote exit code with a nil error when the command ran,
// whatever its code. ssh's own failure code 255 is a transport error (exit
// code 7) "ssh transport to <host> failed: ..."; a remote command that
// itself exits 255 is indistinguishable and reported the same way. Nil
// stdin reads nothing; nil stdout/stderr discard.
func (s *Session) Run(ctx context.Context, remote string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if err := s.Open(ctx); err != nil {
		return -1, err
	}
	tail := &tailBuffer{max: tailBytes}
	var errw io.Writer = tail
	if stderr != nil {
		errw = io.MultiWriter(stderr, tail)
	}
	args := append(s.Args(), Destination(s.t), "--", remote)
	_, err := s.r.Run(ctx, execx.Cmd{
		Name: s.ssh, Args: args,
		Env:         []string{"SHELL=/bin/sh"},
		Stdin:       stdin,
		Stdout:      stdout,
		Stderr:      errw,
		Passthrough: true, // stream only; no in-memory capture of long runs
	})
	if err == nil {
		return 0, nil
	}
	var ee *execx.ExitError
	if errors.As(err, &ee) && ee.Code != 255 {
		return ee.Code, nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return -1, cerr
	}
	diag := tail.String()
	detail := execx.LastLines(diag)
	if ee == nil {
		detail = joinDetail(err.Error(), detail)
	}
	s.mu.Lock()
	if proxy := execx.LastLines(s.readLog(s.logDone)); proxy != "" {
		detail = joinDetail(detail, "proxy: "+proxy)
	}
	s.flushLog()
	s.mu.Unlock()
	if detail == "" {
		detail = "ssh exited 255"
	}
	return 255, transportError(s.t, detail, diag)
}

// Output runs remote and returns its stdout. A non-zero exit is an
// *execx.ExitError (Output = the remote stderr); transport failures are as
// for Run.
func (s *Session) Output(ctx context.Context, remote string) ([]byte, error) {
	var out, errb bytes.Buffer
	code, err := s.Run(ctx, remote, nil, &out, &errb)
	if err != nil {
		return out.Bytes(), err
	}
	if code != 0 {
		return out.Bytes(), &execx.ExitError{Cmd: "ssh " + Destination(s.t) + " -- " + remote, Code: code, Output: strings.TrimSpace(errb.String())}
	}
	return out.Bytes(), nil
}

// WaitReady opens the session and runs the target's ready check until it
// succeeds or timeout passes. After each failure it calls
// progress (when non-nil) with the elapsed time and the failure, then waits
// 2 s. Timing out is exit code 5. A refused host key (HostKeyError) is
// returned at once.
func (s *Session) WaitReady(ctx context.Context, timeout time.Duration, progress func(elapsed time.Duration, lastErr error)) error {
	check := s.t.ReadyCheck
	if check == "" {
		check = "true"
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastErr error
	for {
		err := s.Open(wctx)
		if err == nil {
			var errb tailBuffer
			errb.max = tailBytes
			var code int
			code, err = s.Run(wctx, check, nil, nil, &errb)
			if err != nil && s.persistent() && wctx.Err() == nil {
				// A persistent master that no longer carries sessions
				// (an earlier process's, its connection hung) would
				// answer every retry the same way: end it, so the next
				// attempt starts a new one.
				_ = s.Shutdown()
			}
			if err == nil && code != 0 {
				err = fmt.Errorf("ready check exited %d", code)
				if d := execx.LastLines(errb.String()); d != "" {
					err = fmt.Errorf("ready check exited %d: %s", code, d)
				}
			}
		}
		if err == nil {
			return nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if AsHostKeyError(err) != nil {
			return err // a refused host key does not fix itself: no retries
		}
		if wctx.Err() == nil || lastErr == nil {
			lastErr = err // keep the real failure, not "context deadline exceeded"
		}
		elapsed := time.Since(start)
		if wctx.Err() != nil || elapsed+s.retryDelay >= timeout {
			next := "check the workspace agent with `coder list`"
			if s.t.ProxyCommand == "" {
				next = "check that the host is up and lets you in (`ssh -p " + fmt.Sprint(port(s.t)) + " " + Destination(s.t) + "`)"
			}
			return exitcode.Errorf(exitcode.NotFound,
				"timed out waiting for SSH on %s after %s (last error: %v); %s",
				s.t.Host, timeout, lastErr, exitcode.NextAction(next+", then retry"))
		}
		if progress != nil {
			progress(elapsed, err)
		}
		timer := time.NewTimer(s.retryDelay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}

// Close ends the master (ssh -O exit -o ControlPath=<sock> <dest>, bounded
// to 10 s) and removes the socket directory. It is safe to call more than
// once and when the session was never opened.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		return nil
	}
	if s.persistent() {
		// The master outlives this process by design: only stop using it.
		s.flushLog()
		s.dir, s.sock, s.open, s.sockSeen, s.logDone = "", "", false, false, 0
		return nil
	}
	return s.exitLocked()
}

// listening reports whether a process accepts connections on the unix
// socket sock.
func listening(sock string) bool {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// exitLocked ends the master at s.sock and removes s.dir (a persistent
// master's socket and record).
func (s *Session) exitLocked() error {
	var err error
	if s.open || exists(s.sock) {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		_, xerr := s.r.Run(ctx, execx.Cmd{
			Name:    s.ssh,
			Args:    []string{"-O", "exit", "-o", "ControlPath=" + configPath(s.sock), Destination(s.t)},
			Timeout: closeTimeout,
		})
		cancel()
		if xerr != nil && s.persistent() {
			s.killMaster()
		}
		if xerr != nil && exists(s.sock) && listening(s.sock) {
			// (A socket nobody listens on is a dead master's: gone.)
			err = exitcode.Errorf(exitcode.Transport, "stopping the ssh control master for %s: %v", s.t.Host, xerr)
		}
	}
	s.flushLog()
	s.pinned = false
	if s.persistent() {
		// The directory (its lock file) stays for the next master.
		s.forgetLocked()
	} else if rerr := os.RemoveAll(s.dir); rerr != nil && err == nil {
		err = rerr
	}
	s.dir, s.sock, s.open, s.sockSeen, s.logDone = "", "", false, false, 0
	return err
}

func (s *Session) logPath() string { return filepath.Join(s.dir, "log") }

// masterTarget is the target as the master sees it: with ControlPersist,
// ssh points the ProxyCommand's stderr at /dev/null, so the master's
// ProxyCommand appends its stderr to the session log instead (`coder ssh`
// explains there why a workspace is unreachable). This assumes the
// ProxyCommand is one simple command, as Coder's is.
func (s *Session) masterTarget() lease.Target {
	t := s.t
	if t.ProxyCommand != "" {
		t.ProxyCommand += " 2>>" + Quote(s.logPath())
	}
	return t
}

// readLog returns the master log from byte offset from (tail-capped).
func (s *Session) readLog(from int64) string {
	if s.dir == "" {
		return ""
	}
	b, err := os.ReadFile(s.logPath())
	if err != nil || int64(len(b)) <= from {
		return ""
	}
	b = b[from:]
	if len(b) > tailBytes {
		b = b[len(b)-tailBytes:]
	}
	return string(b)
}

// flushLog copies new master/proxy log output to the Log writer.
func (s *Session) flushLog() {
	if s.dir == "" {
		return
	}
	b, err := os.ReadFile(s.logPath())
	if err != nil || int64(len(b)) <= s.logDone {
		return
	}
	if s.log != nil {
		_, _ = s.log.Write(b[s.logDone:])
	}
	s.logDone = int64(len(b))
}

// makeSocketDir makes the private socket directory under tmp, falling back
// to /tmp when tmp is too deep for a unix socket path.
func makeSocketDir(tmp string) (string, error) {
	for _, base := range []string{tmp, "/tmp"} {
		// MkdirTemp adds up to 20 digits; the socket is <dir>/m.
		if len(filepath.Join(base, "crabbox-ssh-01234567890123456789", "m"))+sshTempSuffix >= maxSocketPath {
			continue
		}
		dir, err := os.MkdirTemp(base, "crabbox-ssh-")
		if err != nil {
			return "", fmt.Errorf("creating ssh control dir: %w", err)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("creating ssh control dir: %w", err)
		}
		return dir, nil
	}
	return "", fmt.Errorf("no directory short enough for an ssh control socket (TempDir %q)", tmp)
}

func exists(p string) bool {
	if p == "" {
		return false
	}
	_, err := os.Lstat(p)
	return err == nil
}

func joinDetail(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
