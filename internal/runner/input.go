package runner

import (
	"errors"
	"io"
	"os"
	"sync"
)

// Script is a user script to run instead of a command (--script,
// --script-stdin); Spec.Argv are then its arguments.
type Script struct {
	// Name is how the script is shown (the local path, or "-" for stdin).
	Name string
	Body []byte
}

// commandWords is the command as history and the run line show it.
func (s Spec) commandWords() []string {
	if s.Script == nil {
		return s.Argv
	}
	flag := []string{"--script", s.Script.Name}
	if s.Script.Name == "-" {
		flag = []string{"--script-stdin"}
	}
	return append(flag, s.Argv...)
}

// commandInput is the ssh process's stdin while the command runs: a pipe
// whose read end the process gets as is (an *os.File, so exec starts no
// copying goroutine and Wait never waits on crabbox's own stdin). A
// goroutine writes the rendered header (env file, scripts), then copies in
// (when non-nil), and closes the write end at in's EOF, which the remote
// command sees as its EOF. Nothing is buffered beyond the pipe.
type commandInput struct {
	r    *os.File
	mu   sync.Mutex
	rerr error // a failed read of in (not EOF)
}

// header writes in that goroutine: it may wait (a fast attempt's
// fingerprint, still being computed when the ssh starts, goes after the
// command's files). wait, when not nil, is asked after the header and
// before in is first read: false leaves in unread (a fast attempt that
// did not start the command; its input goes to the next attempt).
func newCommandInput(header func(io.Writer) error, in io.Reader, wait func() bool) (*commandInput, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	ci := &commandInput{r: pr}
	go func() {
		defer pw.Close()
		if err := header(pw); err != nil || in == nil {
			return // the process is gone (its stdin closed) or there is no input
		}
		if wait != nil && !wait() {
			return
		}
		buf := make([]byte, 256<<10)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				if _, werr := pw.Write(buf[:n]); werr != nil {
					return // the command ended without reading it all
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					ci.mu.Lock()
					ci.rerr = err
					ci.mu.Unlock()
				}
				return
			}
		}
	}()
	return ci, nil
}

// close closes the read end once the process has exited: a copy still
// writing then fails and stops (a copy blocked reading in stays blocked
// until in delivers or crabbox exits; nothing waits for it). It returns a
// read error of in seen so far.
func (ci *commandInput) close() error {
	ci.r.Close()
	ci.mu.Lock()
	defer ci.mu.Unlock()
	return ci.rerr
}
