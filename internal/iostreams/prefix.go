package iostreams

import (
	"bytes"
	"io"
	"sync"
)

// Plain returns streams that write to out and errOut as a non-terminal
// (plain progress lines), with s's input, NO_COLOR and clock: one part of
// a command that runs several things at once (run --shards).
func (s *IOStreams) Plain(out, errOut io.Writer) *IOStreams {
	return &IOStreams{In: s.In, Out: out, ErrOut: errOut, noColor: s.noColor, now: s.now}
}

// LineWriter writes whole lines to an underlying writer, each one with a
// prefix ("[2/4] "), in one Write call under a lock shared by every
// LineWriter of the same Lines: lines from several writers never mix
// mid-line. A partial last line waits for its newline or Flush.
type LineWriter struct {
	l      *Lines
	w      io.Writer
	prefix []byte
	mu     sync.Mutex
	buf    []byte
}

// Lines is the lock shared by the LineWriters of one output.
type Lines struct{ mu sync.Mutex }

// maxLine is how much of a line without a newline is held before it is
// written anyway.
const maxLine = 64 << 10

// Writer returns a LineWriter onto w with prefix.
func (l *Lines) Writer(w io.Writer, prefix string) *LineWriter {
	return &LineWriter{l: l, w: w, prefix: []byte(prefix)}
}

// Write buffers p and writes every complete line.
func (w *LineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	var out []byte
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) < maxLine {
				break
			}
			i = len(w.buf) - 1 // a huge line goes out in pieces
		}
		out = append(out, w.prefix...)
		out = append(out, w.buf[:i+1]...)
		w.buf = w.buf[i+1:]
	}
	if len(out) > 0 {
		if err := w.emit(out); err != nil {
			return len(p), err
		}
	}
	return len(p), nil
}

// Flush writes a partial last line (ended with a newline).
func (w *LineWriter) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) == 0 {
		return nil
	}
	out := append(append(append([]byte(nil), w.prefix...), w.buf...), '\n')
	w.buf = nil
	return w.emit(out)
}

func (w *LineWriter) emit(b []byte) error {
	w.l.mu.Lock()
	defer w.l.mu.Unlock()
	_, err := w.w.Write(b)
	return err
}

// Write writes b to w whole, under the lock of l's writers (a block of
// output that must not mix with their lines).
func (l *Lines) Write(w io.Writer, b []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := w.Write(b)
	return err
}
