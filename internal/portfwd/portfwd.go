// Package portfwd keeps loopback port forwards to a lease open (crabbox
// tunnel): 127.0.0.1:LOCAL on this machine to 127.0.0.1:REMOTE on the
// machine, over the lease's ssh control master, until the context ends.
// While it runs the lease is marked as used and the connection is held
// in use; one that drops is set up again.
package portfwd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// TickEvery is how often a running tunnel marks the lease used.
const TickEvery = time.Minute

// cancelTimeout bounds removing the forwards at the end.
const cancelTimeout = 15 * time.Second

// ParseSpecs reads LOCALPORT[:REMOTEPORT] arguments (REMOTEPORT defaults
// to LOCALPORT). Ports are 1-65535; a local port may appear once.
func ParseSpecs(args []string) ([]sshx.LocalForward, error) {
	if len(args) == 0 {
		return nil, exitcode.Errorf(exitcode.Usage, "which ports? crabbox tunnel --id LEASE LOCALPORT[:REMOTEPORT]...")
	}
	seen := map[int]bool{}
	var out []sshx.LocalForward
	for _, a := range args {
		l, r, hasRemote := strings.Cut(a, ":")
		if !hasRemote {
			r = l
		}
		lp, err1 := port(l)
		rp, err2 := port(r)
		if err1 != nil || err2 != nil {
			return nil, exitcode.Errorf(exitcode.Usage, "tunnel: %q is not LOCALPORT[:REMOTEPORT] (ports 1-65535; both ends are 127.0.0.1)", a)
		}
		if seen[lp] {
			return nil, exitcode.Errorf(exitcode.Usage, "tunnel: local port %d given twice", lp)
		}
		seen[lp] = true
		out = append(out, sshx.LocalForward{Local: lp, Remote: rp})
	}
	return out, nil
}

func port(s string) (int, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errors.New("not a port")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, errors.New("not a port")
	}
	return n, nil
}

// Forwarder is the lease's ssh session (*sshx.Session).
type Forwarder interface {
	Forward(ctx context.Context, f sshx.LocalForward) error
	CancelForward(ctx context.Context, f sshx.LocalForward) error
	// Run runs a remote command line through the session (see
	// sshx.Session.Run): a non-nil error is a failed transport.
	Run(ctx context.Context, remote string, stdin io.Reader, stdout, stderr io.Writer) (int, error)
}

// HoldCommand is the remote command that keeps the tunnel's connection in
// use while it runs: the control master ends 60 s after its last session
// closes, and forwards alone do not count as one. It reads the session's
// stdin, which stays open until the tunnel ends, so it also ends with
// the connection and never outlives it on the machine.
const HoldCommand = "exec cat >/dev/null"

// Options configure a tunnel.
type Options struct {
	Forwards []sshx.LocalForward
	// Touch marks the lease as used (its claim's lastUsedAt); it runs at
	// the start and on every tick.
	Touch func() error
	// Tick paces touching; a ticker of TickEvery when nil.
	Tick <-chan time.Time
	// Ready is called once every forward is up.
	Ready func([]sshx.LocalForward)
	// Warn receives problems that do not end the tunnel.
	Warn func(string)
	// Restored is called after a dropped connection was set up again.
	Restored func()
}

// Run checks that every local port is free, sets the forwards up, and
// keeps them until ctx ends (the normal end: nil error, the forwards
// removed). A session running HoldCommand keeps the connection in use
// and notices at once when it drops; the forwards are then set up again
// over a new connection. A taken local port is exit code 2 before
// anything is set up; a connection that cannot be set up again, drops
// twice between two ticks, or a hold the machine ended is exit code 7.
func Run(ctx context.Context, fw Forwarder, o Options) error {
	if o.Warn == nil {
		o.Warn = func(string) {}
	}
	for _, f := range o.Forwards {
		if err := CheckFree(f.Local); err != nil {
			return err
		}
	}
	var up []sshx.LocalForward
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
		defer cancel()
		for _, f := range up {
			if err := fw.CancelForward(cctx, f); err != nil {
				o.Warn(err.Error())
			}
		}
	}()
	for _, f := range o.Forwards {
		if err := fw.Forward(ctx, f); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		up = append(up, f)
	}
	touch := func() {
		if o.Touch == nil {
			return
		}
		if err := o.Touch(); err != nil {
			o.Warn(fmt.Sprintf("marking the lease used: %v", err))
		}
	}
	touch()
	if o.Ready != nil {
		o.Ready(up)
	}
	tick := o.Tick
	if tick == nil {
		t := time.NewTicker(TickEvery)
		defer t.Stop()
		tick = t.C
	}
	drops := 0 // since the last tick
	for {
		held := hold(ctx, fw)
	wait:
		for {
			select {
			case <-ctx.Done():
				<-held
				return nil
			case <-tick:
				touch()
				drops = 0
			case res := <-held:
				if ctx.Err() != nil {
					return nil
				}
				if res.err == nil {
					return exitcode.Errorf(exitcode.Transport, "the connection could not be kept open: the machine ended %q (exit %d)", HoldCommand, res.code)
				}
				if drops++; drops > 1 {
					return exitcode.New(exitcode.Transport, fmt.Errorf("the tunnel's connection dropped again right after it was set up again: %w", res.err))
				}
				break wait
			}
		}
		// The connection dropped (keepalives gave up, the machine
		// restarted): Forward starts a new master.
		for _, f := range up {
			if err := fw.Forward(ctx, f); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return exitcode.New(exitcode.Transport, fmt.Errorf("the tunnel dropped and could not be set up again: %w", err))
			}
		}
		if o.Restored != nil {
			o.Restored()
		}
	}
}

type holdResult struct {
	code int
	err  error
}

// hold runs HoldCommand until ctx ends or the connection drops. Its
// stdin is a pipe whose write end stays open until then: an *os.File,
// handed to ssh as it is (a reader would leave a copying goroutine that
// blocks the command's end until ctx ends).
func hold(ctx context.Context, fw Forwarder) <-chan holdResult {
	out := make(chan holdResult, 1)
	pr, pw, err := os.Pipe()
	if err != nil {
		out <- holdResult{-1, fmt.Errorf("holding the connection: %w", err)}
		return out
	}
	stop := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-stop:
		}
		pw.Close()
	}()
	go func() {
		code, err := fw.Run(ctx, HoldCommand, pr, nil, nil)
		close(stop)
		pr.Close()
		out <- holdResult{code, err}
	}()
	return out
}

// CheckFree refuses a local port that something on this machine already
// listens on (or that this user may not bind): exit code 2.
func CheckFree(p int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err == nil {
		return l.Close()
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return exitcode.Errorf(exitcode.Usage, "local port %d is already in use on this machine; pick another: crabbox tunnel OTHERPORT:REMOTEPORT", p)
	case errors.Is(err, syscall.EACCES):
		return exitcode.Errorf(exitcode.Usage, "local port %d needs privileges to listen on; pick one above 1023", p)
	}
	return exitcode.Errorf(exitcode.Usage, "local port %d cannot be used: %v", p, err)
}
