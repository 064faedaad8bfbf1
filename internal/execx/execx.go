// Package execx runs external programs (coder, ssh, rsync, git) behind one
// small interface so tests can record argv and script replies.
package execx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Cmd describes one program invocation.
type Cmd struct {
	Name string   // program (path or name looked up on PATH)
	Args []string // arguments, without Name
	Env  []string // extra KEY=VALUE entries added to the parent's environment
	Dir  string   // working directory; empty means the current one

	Stdin io.Reader
	// Stdout and Stderr, when set, receive the stream live. The Result
	// still holds what was written (capped at CaptureLimit bytes).
	Stdout io.Writer
	Stderr io.Writer

	// Timeout bounds the whole invocation; zero means only ctx bounds it.
	Timeout time.Duration

	// Passthrough hands Stdout and Stderr to the process as they are, with
	// no capture (Result streams stay empty). Use it with *os.File writers
	// (or nil for /dev/null) for programs that leave a background child
	// holding their stdio, such as an ssh control master started with -f.
	Passthrough bool
}

// String renders the command for messages (never includes Env values).
func (c Cmd) String() string {
	return strings.TrimSpace(c.Name + " " + strings.Join(c.Args, " "))
}

// Result is what a finished program produced.
type Result struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
}

// Combined returns stdout followed by stderr, trimmed.
func (r Result) Combined() string {
	return strings.TrimSpace(strings.TrimSpace(string(r.Stdout)) + "\n" + strings.TrimSpace(string(r.Stderr)))
}

// ExitError is returned when a program ran and exited non-zero.
type ExitError struct {
	Cmd    string
	Code   int
	Output string // combined output, trimmed
}

func (e *ExitError) Error() string {
	if e.Output == "" {
		return fmt.Sprintf("%s: exit status %d", e.Cmd, e.Code)
	}
	return fmt.Sprintf("%s: exit status %d: %s", e.Cmd, e.Code, e.Output)
}

// TimeoutError is returned when a program was killed for running too long.
type TimeoutError struct {
	Cmd     string
	Timeout time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s: timed out after %s", e.Cmd, e.Timeout)
}

// Runner executes commands.
type Runner interface {
	Run(ctx context.Context, c Cmd) (Result, error)
}

// CaptureLimit caps how much of each stream a Result keeps.
const CaptureLimit = 16 << 20

// OS runs real processes.
type OS struct{}

// Run starts c and waits for it. A non-zero exit is an *ExitError; a
// timeout is a *TimeoutError; a missing program is the exec error.
func (OS) Run(ctx context.Context, c Cmd) (Result, error) {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, c.Name, c.Args...)
	cmd.Dir = c.Dir
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	cmd.Stdin = c.Stdin
	// Own process group, so a timeout or cancel ends grandchildren too;
	// on Linux the child also dies with crabbox (see sysProcAttr).
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
	cmd.WaitDelay = 5 * time.Second
	var out, errb capBuffer
	if c.Passthrough {
		cmd.Stdout, cmd.Stderr = c.Stdout, c.Stderr
	} else {
		cmd.Stdout = tee(&out, c.Stdout)
		cmd.Stderr = tee(&errb, c.Stderr)
	}
	err := runLocked(cmd)
	res := Result{Stdout: out.Bytes(), Stderr: errb.Bytes()}
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	if err == nil {
		return res, nil
	}
	if ctx.Err() == context.DeadlineExceeded && c.Timeout > 0 {
		res.ExitCode = -1
		return res, &TimeoutError{Cmd: c.String(), Timeout: c.Timeout}
	}
	if ctx.Err() != nil {
		res.ExitCode = -1
		return res, ctx.Err()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if res.ExitCode < 0 { // killed by a signal
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				res.ExitCode = 128 + int(ws.Signal())
			}
		}
		return res, &ExitError{Cmd: c.String(), Code: res.ExitCode, Output: res.Combined()}
	}
	return res, err
}

func tee(buf *capBuffer, w io.Writer) io.Writer {
	if w == nil {
		return buf
	}
	return io.MultiWriter(buf, w)
}

// capBuffer keeps at most CaptureLimit bytes (the first ones).
type capBuffer struct{ bytes.Buffer }

func (b *capBuffer) Write(p []byte) (int, error) {
	if room := CaptureLimit - b.Len(); room > 0 {
		if len(p) > room {
			b.Buffer.Write(p[:room])
		} else {
			b.Buffer.Write(p)
		}
	}
	return len(p), nil
}
