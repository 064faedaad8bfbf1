package iostreams

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func withDelays(t *testing.T, delay, interval time.Duration) {
	t.Helper()
	od, oi := ProgressDelay, PlainInterval
	ProgressDelay, PlainInterval = delay, interval
	t.Cleanup(func() { ProgressDelay, PlainInterval = od, oi })
}

// TestProgressQuietForShortSteps: a step shorter than ProgressDelay prints
// nothing, on a terminal or not.
func TestProgressQuietForShortSteps(t *testing.T) {
	withDelays(t, 200*time.Millisecond, time.Hour)
	for _, tty := range []bool{false, true} {
		s, _, out, errb := Test()
		s.SetStderrTTY(tty)
		p := s.StartProgress("creating workspace")
		time.Sleep(10 * time.Millisecond)
		if d := p.Done(nil); d <= 0 {
			t.Errorf("Done returned %v", d)
		}
		p.Done(nil) // twice is fine
		if errb.Len() != 0 || out.Len() != 0 {
			t.Errorf("tty=%v: short step printed %q %q", tty, errb.String(), out.String())
		}
	}
}

var plainLine = regexp.MustCompile(`^\d\d:\d\d:\d\d `)

// TestProgressPlainLines: off a terminal, a slow step prints timestamped
// start/progress lines and a final "done in"/"failed after" line, nothing
// on stdout.
func TestProgressPlainLines(t *testing.T) {
	withDelays(t, 20*time.Millisecond, 30*time.Millisecond)
	for _, fail := range []bool{false, true} {
		s, _, out, errb := Test()
		p := s.StartProgress("waiting for workspace agent")
		p.Update("agent connecting")
		time.Sleep(120 * time.Millisecond)
		var err error
		if fail {
			err = errors.New("boom")
		}
		p.Done(err)
		if out.Len() != 0 {
			t.Errorf("progress wrote to stdout: %q", out.String())
		}
		lines := strings.Split(strings.TrimSuffix(errb.String(), "\n"), "\n")
		if len(lines) < 2 {
			t.Fatalf("lines %q", lines)
		}
		for _, l := range lines {
			if !plainLine.MatchString(l) || strings.Contains(l, "\r") || strings.Contains(l, "\033") {
				t.Errorf("line %q is not a plain timestamped line", l)
			}
		}
		if !strings.Contains(lines[0], "waiting for workspace agent elapsed=") || !strings.Contains(lines[0], "agent connecting") {
			t.Errorf("first line %q", lines[0])
		}
		last := lines[len(lines)-1]
		want := "waiting for workspace agent done in "
		if fail {
			want = "waiting for workspace agent failed after "
		}
		if !strings.Contains(last, want) {
			t.Errorf("last line %q, want %q", last, want)
		}
	}
}

// TestProgressTTY: on a terminal the live line is redrawn in place and the
// final line ends it.
func TestProgressTTY(t *testing.T) {
	withDelays(t, 20*time.Millisecond, time.Hour)
	s, _, _, errb := Test()
	s.SetStderrTTY(true)
	p := s.StartProgress("syncing")
	time.Sleep(80 * time.Millisecond)
	p.Done(nil)
	got := errb.String()
	if !strings.HasPrefix(got, "\r\033[Ksyncing ") || !strings.Contains(got, "\r\033[Ksyncing done in ") || !strings.HasSuffix(got, "\n") {
		t.Errorf("tty output %q", got)
	}
}

func TestColorEnabled(t *testing.T) {
	s, _, _, _ := Test()
	if s.ColorEnabled() {
		t.Error("colour on a non-terminal")
	}
	s.SetStderrTTY(true)
	if !s.ColorEnabled() || !s.IsStderrTTY() {
		t.Error("colour off on a terminal")
	}
	s.noColor = true
	if s.ColorEnabled() {
		t.Error("NO_COLOR ignored")
	}
	t.Setenv("NO_COLOR", "")
	if sys := System(); sys.ColorEnabled() {
		t.Error("System ignores NO_COLOR")
	}
}

// TestStartStepPlain: off a terminal a step prints its start line at once
// (even when it ends quickly) and a final line; on a terminal a quick step
// prints nothing, like StartProgress.
func TestStartStepPlain(t *testing.T) {
	withDelays(t, time.Hour, time.Hour)
	s, _, out, errb := Test()
	p := s.StartStep("creating workspace w1")
	p.Done(nil)
	lines := strings.Split(strings.TrimSuffix(errb.String(), "\n"), "\n")
	if len(lines) != 2 || out.Len() != 0 {
		t.Fatalf("lines %q stdout %q", lines, out.String())
	}
	if !regexp.MustCompile(`^\d\d:\d\d:\d\d creating workspace w1…$`).MatchString(lines[0]) {
		t.Errorf("start line %q", lines[0])
	}
	if !regexp.MustCompile(`^\d\d:\d\d:\d\d creating workspace w1 done in \S+$`).MatchString(lines[1]) {
		t.Errorf("final line %q", lines[1])
	}
	s, _, _, errb = Test()
	s.StartStep("stopping workspace w1").Done(errors.New("boom"))
	if !strings.Contains(errb.String(), "stopping workspace w1 failed after ") {
		t.Errorf("failed step: %q", errb.String())
	}
	s, _, _, errb = Test()
	s.SetStderrTTY(true)
	s.StartStep("creating workspace w1").Done(nil)
	if errb.Len() != 0 {
		t.Errorf("tty: quick step printed %q", errb.String())
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s",
		412*time.Millisecond + 400*time.Microsecond: "412ms",
		999 * time.Millisecond:                      "999ms",
		time.Second:                                 "1s",
		1234 * time.Millisecond:                     "1.2s",
		61*time.Second + 550*time.Millisecond:       "1m1.6s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestSyncWriter: concurrent writes arrive whole, none interleaved.
func TestSyncWriter(t *testing.T) {
	var buf bytes.Buffer
	w := SyncWriter(&buf)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			line := []byte(strings.Repeat(string(rune('a'+i)), 64) + "\n")
			for j := 0; j < 200; j++ {
				if _, err := w.Write(line); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 8*200 {
		t.Fatalf("%d lines", len(lines))
	}
	for _, l := range lines {
		if len(l) != 64 || strings.Trim(l, l[:1]) != "" {
			t.Fatalf("torn line %q", l)
		}
	}
}
