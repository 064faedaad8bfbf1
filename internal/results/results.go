// Package results parses JUnit XML test reports into a compact summary
// (docs/commands/history.md, crabbox results): counts, total time and the
// failed test cases. It is pure: no file system, no crabbox imports.
package results

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Format is the only report format crabbox reads.
const Format = "junit"

// Bounds that keep a stored summary small however large the report.
const (
	// MaxFailed is the most failed test cases a Summary keeps. The counts
	// (Failures, Errors) stay exact; Failed is cut after MaxFailed entries.
	MaxFailed = 500
	// MaxMessage is the most bytes of a failure message kept (cut at a rune
	// boundary).
	MaxMessage = 2048
)

// Failure is one failed or errored test case.
type Failure struct {
	Suite     string `json:"suite"`
	Name      string `json:"name"`
	Classname string `json:"classname"`
	File      string `json:"file"`
	Message   string `json:"message"`
	Type      string `json:"type"`
	Kind      string `json:"kind"` // KindFailure or KindError
}

// Failure kinds.
const (
	KindFailure = "failure"
	KindError   = "error"
)

// Summary is the result of one or more reports.
type Summary struct {
	Format      string    `json:"format"`
	Files       []string  `json:"files"`
	Suites      int       `json:"suites"`
	Tests       int       `json:"tests"`
	Failures    int       `json:"failures"`
	Errors      int       `json:"errors"`
	Skipped     int       `json:"skipped"`
	TimeSeconds float64   `json:"timeSeconds"`
	Failed      []Failure `json:"failed"`
	// Timings are the seconds of each suite by name and by file attribute,
	// and of the test cases by classname and file where no suite has that
	// name (at most MaxTimings names; a name seen twice adds up): what run
	// --shards weighs its items by.
	Timings map[string]float64 `json:"timings,omitempty"`
}

// MaxTimings bounds Summary.Timings.
const MaxTimings = 5000

func (s *Summary) addTiming(name string, sec float64) {
	if name == "" || sec < 0 {
		return
	}
	if s.Timings == nil {
		s.Timings = map[string]float64{}
	}
	if _, ok := s.Timings[name]; !ok && len(s.Timings) >= MaxTimings {
		return
	}
	s.Timings[name] = roundMillis(s.Timings[name] + sec)
}

// MarshalJSON writes files and failed as arrays even when empty, and format
// as "junit" when unset.
func (s Summary) MarshalJSON() ([]byte, error) {
	type plain Summary
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // messages keep their <, > and &; an escaping encoder still escapes
	if err := enc.Encode(plain(s.normalized())); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func (s Summary) normalized() Summary {
	if s.Format == "" {
		s.Format = Format
	}
	if s.Files == nil {
		s.Files = []string{}
	}
	if s.Failed == nil {
		s.Failed = []Failure{}
	}
	return s
}

// Merge adds summaries together: files and failed cases are concatenated in
// order (failed capped at MaxFailed), counts and times summed.
func Merge(sums ...Summary) Summary {
	out := Summary{Files: []string{}, Failed: []Failure{}}
	for _, s := range sums {
		if out.Format == "" && s.Format != "" {
			out.Format = s.Format
		}
		out.Files = append(out.Files, s.Files...)
		out.Suites += s.Suites
		out.Tests += s.Tests
		out.Failures += s.Failures
		out.Errors += s.Errors
		out.Skipped += s.Skipped
		out.TimeSeconds += s.TimeSeconds
		for name, sec := range s.Timings {
			out.addTiming(name, sec)
		}
		for _, f := range s.Failed {
			if len(out.Failed) >= MaxFailed {
				break
			}
			out.Failed = append(out.Failed, f)
		}
	}
	if out.Format == "" {
		out.Format = Format
	}
	return out
}

// Line is the one-line summary:
// "results format=junit files=N suites=N tests=N failures=N errors=N skipped=N time=12.3s".
// The time is in seconds, at most three decimals.
func (s Summary) Line() string {
	s = s.normalized()
	return "results format=" + s.Format +
		" files=" + strconv.Itoa(len(s.Files)) +
		" suites=" + strconv.Itoa(s.Suites) +
		" tests=" + strconv.Itoa(s.Tests) +
		" failures=" + strconv.Itoa(s.Failures) +
		" errors=" + strconv.Itoa(s.Errors) +
		" skipped=" + strconv.Itoa(s.Skipped) +
		" time=" + FormatSeconds(s.TimeSeconds) + "s"
}

// FormatSeconds renders seconds with at most three decimals and no
// trailing zeros ("12.3", "0.05", "7").
func FormatSeconds(sec float64) string {
	if sec < 0 {
		sec = 0
	}
	return strconv.FormatFloat(roundMillis(sec), 'f', -1, 64)
}

func roundMillis(sec float64) float64 {
	ms, err := strconv.ParseFloat(strconv.FormatFloat(sec, 'f', 3, 64), 64)
	if err != nil {
		return sec
	}
	return ms
}

// HasFailures reports whether any test failed or errored.
func (s Summary) HasFailures() bool {
	return s.Failures > 0 || s.Errors > 0 || len(s.Failed) > 0
}

// FirstLine is the first non-empty line of a message, trimmed (for
// one-line displays).
func FirstLine(msg string) string {
	for line := range strings.SplitSeq(msg, "\n") {
		if t := strings.TrimSpace(line); t != "" {
			return t
		}
	}
	return ""
}

// clip cuts s to at most n bytes at a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
