package sshx

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// controlTimeout bounds one `ssh -O` request to the master.
const controlTimeout = 15 * time.Second

// LocalForward is a port forward from 127.0.0.1:Local on this machine to
// 127.0.0.1:Remote on the target. Both ends are loopback only.
type LocalForward struct {
	Local, Remote int
}

// Spec is the forward as ssh's -L takes it:
// 127.0.0.1:<local>:127.0.0.1:<remote>.
func (f LocalForward) Spec() string {
	return "127.0.0.1:" + strconv.Itoa(f.Local) + ":127.0.0.1:" + strconv.Itoa(f.Remote)
}

// Forward asks the session's control master to listen on 127.0.0.1:Local
// and forward each connection to 127.0.0.1:Remote on the target, opening
// the session first if needed:
//
//	ssh -O forward -L 127.0.0.1:<local>:127.0.0.1:<remote> -o ControlPath=<sock> <dest>
//
// The forward lives as long as the master (Close ends it) or until
// CancelForward. A master that no longer answers is replaced first. A
// refused forward (the port is taken) is exit code 2; a master that
// cannot be started is a transport error (exit code 7).
func (s *Session) Forward(ctx context.Context, f LocalForward) error {
	if err := s.Open(ctx); err != nil {
		return err
	}
	out, err := s.control(ctx, "forward", "-L", f.Spec())
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if !s.alive(ctx) {
		// The master is gone but left its socket (it was killed): start
		// a new one and ask once more.
		if err := s.restart(ctx); err != nil {
			return err
		}
		if out, err = s.control(ctx, "forward", "-L", f.Spec()); err == nil {
			return nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if !s.alive(ctx) {
			return transportError(s.t, "forwarding "+f.Spec()+": "+joinDetail(execx.LastLines(out), err.Error()), out)
		}
	}
	return exitcode.Errorf(exitcode.Usage, "cannot forward 127.0.0.1:%d to port %d on %s: %s", f.Local, f.Remote, s.t.Host, joinDetail(execx.LastLines(out), "is the local port in use?"))
}

// restart starts a new master in place of one that no longer answers.
func (s *Session) restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open = false
	return s.openLocked(ctx)
}

// CancelForward removes a forward Forward added (ssh -O cancel).
func (s *Session) CancelForward(ctx context.Context, f LocalForward) error {
	out, err := s.control(ctx, "cancel", "-L", f.Spec())
	if err != nil {
		return fmt.Errorf("cancelling the forward %s: %s", f.Spec(), joinDetail(execx.LastLines(out), err.Error()))
	}
	return nil
}

// alive reports whether the session's master is up and answering
// (ssh -O check).
func (s *Session) alive(ctx context.Context) bool {
	_, err := s.control(ctx, "check")
	return err == nil
}

// control runs `ssh -O <op> [args] -o ControlPath=<sock> <dest>` against the
// master, bounded by controlTimeout; it returns ssh's output.
func (s *Session) control(ctx context.Context, op string, args ...string) (string, error) {
	s.mu.Lock()
	sock := s.sock
	s.mu.Unlock()
	if sock == "" {
		return "", errors.New("the ssh session is not open")
	}
	argv := append([]string{"-O", op}, args...)
	argv = append(argv, "-o", "ControlPath="+configPath(sock), Destination(s.t))
	res, err := s.r.Run(ctx, execx.Cmd{Name: s.ssh, Args: argv, Timeout: controlTimeout})
	return res.Combined(), err
}
