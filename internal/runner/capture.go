package runner

import (
	"fmt"
	"os"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/fsx"
	"github.com/crabbox-dev/crabbox/internal/runs"
)

// capture is one remote stream written to a local file instead of the
// terminal and the run log (--capture-stdout, --capture-stderr).
type capture struct {
	stream, flag string
	f            *fsx.AtomicFile
}

// openCaptures starts the captures s asks for (0600 files, renamed into
// place when the command ends). A file that cannot be made is a usage
// error before anything remote happens.
func openCaptures(s Spec) ([]*capture, error) {
	var caps []*capture
	for _, c := range []struct{ stream, flag, path string }{
		{"stdout", "--capture-stdout", s.CaptureStdout},
		{"stderr", "--capture-stderr", s.CaptureStderr},
	} {
		if c.path == "" {
			continue
		}
		f, err := fsx.CreateAtomic(c.path, 0o600)
		if err != nil {
			abortCaptures(caps)
			return nil, exitcode.Errorf(exitcode.Usage, "%s %s: %v", c.flag, c.path, err)
		}
		caps = append(caps, &capture{stream: c.stream, flag: c.flag, f: f})
	}
	return caps, nil
}

func abortCaptures(caps []*capture) {
	for _, c := range caps {
		c.f.Abort()
	}
}

// file is the stream's capture file, nil when it is not captured.
func captureFile(caps []*capture, stream string) *os.File {
	for _, c := range caps {
		if c.stream == stream {
			return c.f.File
		}
	}
	return nil
}

// commitCaptures puts each capture in place once the command has ended
// (what arrived, also after an interrupt or a dropped tunnel: partial
// says so) and notes it, with its byte count, in the notes and the run
// log. It returns the first failure.
func (r *run) commitCaptures(caps []*capture, partial string) error {
	var first error
	for _, c := range caps {
		n, err := c.f.Commit()
		if err != nil {
			err = exitcode.Errorf(exitcode.Failure, "%s %s: writing the capture: %v", c.flag, c.f.Path(), err)
			r.notef("warning: %v", err)
			if first == nil {
				first = err
			}
			continue
		}
		line := fmt.Sprintf("%s captured to %s (%d bytes)", c.stream, runs.Escape(c.f.Path()), n)
		if partial != "" {
			line += "; " + partial
		}
		r.notef("%s", line)
		fmt.Fprintf(r.rec.Log(), "crabbox: %s\n", line)
	}
	return first
}
