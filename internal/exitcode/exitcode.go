// Package exitcode carries process exit codes on errors (decision D9).
//
// Commands and packages return errors; cli.Main maps them to a process exit
// code in one place with Code.
package exitcode

import (
	"errors"
	"fmt"
)

// Exit codes (D9).
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

// Code returns the exit code err carries: 0 for nil, the outermost
// wrapped *Error's code when there is one, else 1.
func Code(err error) int {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Failure
}
