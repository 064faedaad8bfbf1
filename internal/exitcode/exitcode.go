// Package exitcode carries process exit codes on errors, and the shapes of
// crabbox's error messages that callers and tests rely on.
//
// Commands and packages return errors; cli.Main maps them to a process exit
// code in one place with Code. The codes are listed in docs/commands/run.md
// (Exit status).
package exitcode

import (
	"errors"
	"fmt"
)

// Exit codes.
const (
	OK        = 0 // success
	Failure   = 1 // generic failure or failed check
	Usage     = 2 // usage, config, claim conflict, refusal
	NotFound  = 5 // not found, ambiguous, timed out waiting
	Sync      = 6 // sync failure
	Transport = 7 // remote transport failure, release failure after a run
	// Interrupted is 128+SIGINT: the run was interrupted (Ctrl-C, SIGTERM,
	// SIGHUP).
	Interrupted = 130
)

// Error is an error with an exit code.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func (e *Error) exitCode() int { return e.Code }

// New wraps err with code. A nil err stays nil.
func New(code int, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Err: err}
}

// Errorf formats an error carrying code.
func Errorf(code int, format string, args ...any) error {
	return &Error{Code: code, Err: fmt.Errorf(format, args...)}
}

// Silent is an exit code whose message has already been shown.
func Silent(code int) error { return &Error{Code: code} }

// RefusedError is crabbox refusing to act: the request conflicts with what
// crabbox knows (a claim that is missing, does not match, or belongs to
// another repository or machine), and nothing was changed. It exits 2.
type RefusedError struct{ Err error }

func (e *RefusedError) Error() string { return e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

func (e *RefusedError) exitCode() int { return Usage }

// Refusef formats a refusal. The message should say that nothing was
// changed and, where there is one, end with the Next command.
func Refusef(format string, args ...any) error {
	return &RefusedError{Err: fmt.Errorf(format, args...)}
}

// IsRefused reports whether err is, or wraps, a refusal.
func IsRefused(err error) bool {
	var r *RefusedError
	return errors.As(err, &r)
}

// ExternalError is an external program (the coder CLI, ssh, rsync) that
// ran and exited with a non-zero code. crabbox exits with the same code
// when it is 1 to 255, so `coder stop` exiting 2 exits 2 as before; a
// caller that must tell it from a refusal asks errors.As for this type.
type ExternalError struct {
	Program string // what ran, e.g. "coder stop"
	Code    int    // its exit code
	Err     error  // the error to show (message and output)
}

func (e *ExternalError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("%s exited %d", e.Program, e.Code)
	}
	return e.Err.Error()
}

func (e *ExternalError) Unwrap() error { return e.Err }

// exitCode is the program's code when it is 1 to 255, else Failure.
func (e *ExternalError) exitCode() int {
	if e.Code > 0 && e.Code < 256 {
		return e.Code
	}
	return Failure
}

// External is the error of program exiting with code; err says what
// happened (it may be nil).
func External(program string, code int, err error) error {
	return &ExternalError{Program: program, Code: code, Err: err}
}

// Code returns the exit code err carries: 0 for nil, the code of the
// outermost wrapped *Error, *RefusedError or *ExternalError when there is
// one, else 1.
func Code(err error) int {
	if err == nil {
		return OK
	}
	// Only this package's types have exitCode (an *exec.ExitError's
	// ExitCode must not leak through).
	var c interface{ exitCode() int }
	if errors.As(err, &c) {
		return c.exitCode()
	}
	return Failure
}

// Next is the one form of a hint naming the crabbox command to run next:
//
//	next: `crabbox stop --reclaim blue-lobster`
//
// A message puts it last, after "; ".
func Next(cmd string) string { return "next: `" + cmd + "`" }

// NextAction is the hint for a step that is not a crabbox command ("retry
// with --full-resync", "install rsync in the workspace image"), in the
// next_action= form that other crabbox implementations print and scripts
// grep for.
func NextAction(what string) string { return "next_action=" + what }
