// Package iostreams owns crabbox's stdio: where primary results and
// diagnostics go, whether stderr is a terminal, NO_COLOR, and progress
// display for slow steps.
package iostreams

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"
)

// IOStreams holds the process's streams.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer // primary results
	ErrOut io.Writer // progress and diagnostics

	stderrTTY bool
	noColor   bool
	now       func() time.Time
}

// System returns the real process streams.
func System() *IOStreams {
	_, noColor := os.LookupEnv("NO_COLOR")
	return &IOStreams{
		In:        os.Stdin,
		Out:       os.Stdout,
		ErrOut:    os.Stderr,
		stderrTTY: term.IsTerminal(int(os.Stderr.Fd())),
		noColor:   noColor,
		now:       time.Now,
	}
}

// Test returns streams backed by buffers (stdin, stdout, stderr).
func Test() (*IOStreams, *bytes.Buffer, *bytes.Buffer, *bytes.Buffer) {
	in, out, errb := &bytes.Buffer{}, &bytes.Buffer{}, &bytes.Buffer{}
	return &IOStreams{In: in, Out: out, ErrOut: SyncWriter(errb), now: time.Now}, in, out, errb
}

// IsStderrTTY reports whether stderr is a terminal.
func (s *IOStreams) IsStderrTTY() bool { return s.stderrTTY }

// SetStderrTTY overrides terminal detection (tests).
func (s *IOStreams) SetStderrTTY(v bool) { s.stderrTTY = v }

// ColorEnabled reports whether colour may be used on stderr.
func (s *IOStreams) ColorEnabled() bool { return s.stderrTTY && !s.noColor }

// Errorf writes a diagnostic line to stderr.
func (s *IOStreams) Errorf(format string, args ...any) {
	fmt.Fprintf(s.ErrOut, format, args...)
}

// Progress reports a slow step. On a terminal it keeps one live line with
// the elapsed time; otherwise it prints a timestamped start line, a line
// every interval while waiting, and a final line.
type Progress struct {
	s       *IOStreams
	label   string
	start   time.Time
	mu      sync.Mutex
	detail  string
	stop    chan struct{}
	done    chan struct{}
	stopped bool
	shown   bool
}

// PlainInterval is how often a non-terminal progress line repeats.
var PlainInterval = 15 * time.Second

// ProgressDelay is how long a step runs before its progress is shown; a
// step that finishes sooner prints nothing.
var ProgressDelay = time.Second

// StartProgress begins reporting label (e.g. "waiting for workspace agent").
func (s *IOStreams) StartProgress(label string) *Progress {
	return s.startProgress(label, false)
}

// StartStep is StartProgress for a step worth a line even when it is
// quick (creating, starting or stopping a workspace): on a non-terminal
// stderr it prints "15:04:05 label…" at once, then the usual repeated and
// final lines ("15:04:05 label done in 3.4s"). On a terminal it is
// StartProgress.
func (s *IOStreams) StartStep(label string) *Progress {
	return s.startProgress(label, !s.stderrTTY)
}

func (s *IOStreams) startProgress(label string, immediate bool) *Progress {
	p := &Progress{s: s, label: label, start: s.now(), stop: make(chan struct{}), done: make(chan struct{})}
	interval := PlainInterval
	if s.stderrTTY {
		interval = 200 * time.Millisecond
	}
	if immediate {
		p.shown = true
		fmt.Fprintf(s.ErrOut, "%s %s…\n", s.now().UTC().Format("15:04:05"), label)
	}
	go func() {
		defer close(p.done)
		if !immediate {
			select {
			case <-p.stop:
				return
			case <-time.After(ProgressDelay):
			}
			p.mu.Lock()
			p.shown = true
			p.mu.Unlock()
			p.tick()
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.tick()
			}
		}
	}()
	return p
}

// Update changes the detail shown after the label (what is awaited now).
func (p *Progress) Update(detail string) {
	p.mu.Lock()
	p.detail = detail
	p.mu.Unlock()
}

func (p *Progress) tick() {
	if p.s.stderrTTY {
		p.mu.Lock()
		d := p.detail
		p.mu.Unlock()
		line := fmt.Sprintf("%s %s", p.label, FormatDuration(p.s.now().Sub(p.start)))
		if d != "" {
			line += " (" + d + ")"
		}
		fmt.Fprintf(p.s.ErrOut, "\r\033[K%s", line)
		return
	}
	p.plain("")
}

func (p *Progress) plain(suffix string) {
	p.mu.Lock()
	d := p.detail
	p.mu.Unlock()
	line := fmt.Sprintf("%s %s elapsed=%s", p.s.now().UTC().Format("15:04:05"), p.label, FormatDuration(p.s.now().Sub(p.start)))
	if d != "" {
		line += " " + d
	}
	fmt.Fprintln(p.s.ErrOut, line+suffix)
}

// Done ends the progress display with a final line "label done in D" (or
// "label failed after D" when err is non-nil).
func (p *Progress) Done(err error) time.Duration {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return p.s.now().Sub(p.start)
	}
	p.stopped = true
	p.mu.Unlock()
	close(p.stop)
	<-p.done
	d := p.s.now().Sub(p.start)
	if !p.shown {
		return d
	}
	word := "done in"
	if err != nil {
		word = "failed after"
	}
	if p.s.stderrTTY {
		fmt.Fprintf(p.s.ErrOut, "\r\033[K%s %s %s\n", p.label, word, FormatDuration(d))
	} else {
		fmt.Fprintf(p.s.ErrOut, "%s %s %s %s\n", p.s.now().UTC().Format("15:04:05"), p.label, word, FormatDuration(d))
	}
	return d
}

// FormatDuration is how crabbox shows an elapsed time: to the millisecond
// below a second ("412ms"), else to the tenth of a second ("1.2s",
// "1m1.5s").
func FormatDuration(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

// SyncWriter serializes the Write calls made on w, for writers shared by
// goroutines (two stream copiers, a progress ticker and its caller).
func SyncWriter(w io.Writer) io.Writer { return &syncWriter{w: w} }

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *syncWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
