package results

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// maxBodyText bounds the text kept from a <failure>/<error> body, used only
// to derive a message when the element has no message attribute.
const maxBodyText = 8 << 10

// group is an open <testsuites> or <testsuite> element.
type group struct {
	suite bool   // <testsuite> (else <testsuites>)
	name  string // suite name
	file  string // suite file attribute

	// Counts from attributes; -1 when absent or unusable.
	aTests, aFailures, aErrors, aSkipped int
	aTime                                float64

	// Counts derived from the test cases and child groups.
	dTests, dFailures, dErrors, dSkipped int
	dTime                                float64
}

func (g *group) totals() (tests, failures, errs, skipped int, sec float64) {
	pick := func(a, d int) int {
		if a >= 0 {
			return a
		}
		return d
	}
	sec = g.dTime
	if g.aTime >= 0 {
		sec = g.aTime
	}
	return pick(g.aTests, g.dTests), pick(g.aFailures, g.dFailures), pick(g.aErrors, g.dErrors), pick(g.aSkipped, g.dSkipped), sec
}

// testCase is an open <testcase>.
type testCase struct {
	name, classname, file string
	time                  float64
	failure, errElem      *Failure // first <failure> / <error>
	skipped               bool
}

// ParseJUnit parses one JUnit XML report. name is recorded in Files and in
// error messages. The root may be <testsuites> or a bare <testsuite>; suites
// may nest. Each count comes from the suite's (or the <testsuites> root's)
// attribute when present and valid, else it is derived from its test cases
// and child suites. Malformed XML or another root element is an error.
func ParseJUnit(name string, data []byte) (Summary, error) {
	sum := Summary{Format: Format, Files: []string{}, Failed: []Failure{}}
	if name != "" {
		sum.Files = append(sum.Files, name)
	}
	label := name
	if label == "" {
		label = "junit report"
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	d := xml.NewDecoder(bytes.NewReader(data))
	d.CharsetReader = charsetReader

	var (
		stack   []*group
		tc      *testCase
		tcDepth int // len(stack) when tc opened
		body    *Failure
		text    strings.Builder
		rootEnd bool
	)
	parseErr := func(err error) error {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("%s: malformed XML: %w", label, err)
	}
	finishGroup := func() {
		g := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		t, f, e, s, sec := g.totals()
		if g.suite {
			sum.addTiming(g.name, sec)
			if g.file != "" && g.file != g.name {
				sum.addTiming(g.file, sec)
			}
		}
		if len(stack) == 0 {
			sum.Tests, sum.Failures, sum.Errors, sum.Skipped, sum.TimeSeconds = t, f, e, s, sec
			rootEnd = true
			return
		}
		p := stack[len(stack)-1]
		p.dTests += t
		p.dFailures += f
		p.dErrors += e
		p.dSkipped += s
		p.dTime += sec
	}
	// Test cases' times by classname and file, for the names no suite
	// has (pytest's one suite "pytest" holds every module's cases).
	var caseTimes Summary
	finishCase := func() {
		if tc.classname != "" {
			caseTimes.addTiming(tc.classname, tc.time)
		}
		if tc.file != "" && tc.file != tc.classname {
			caseTimes.addTiming(tc.file, tc.time)
		}
		g := stack[len(stack)-1]
		g.dTests++
		g.dTime += tc.time
		switch {
		case tc.failure != nil || tc.errElem != nil:
			if tc.failure != nil {
				g.dFailures++
			}
			if tc.errElem != nil {
				g.dErrors++
			}
		case tc.skipped:
			g.dSkipped++
		}
		for _, f := range []*Failure{tc.failure, tc.errElem} {
			if f != nil && len(sum.Failed) < MaxFailed {
				sum.Failed = append(sum.Failed, *f)
			}
		}
		tc = nil
	}

	for !rootEnd {
		tok, err := d.Token()
		if err != nil {
			if errors.Is(err, io.EOF) && len(stack) == 0 {
				return Summary{}, fmt.Errorf("%s: not a JUnit report: no <testsuites> or <testsuite> element", label)
			}
			return Summary{}, parseErr(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			local := t.Name.Local
			if len(stack) == 0 {
				if local != "testsuites" && local != "testsuite" {
					return Summary{}, fmt.Errorf("%s: not a JUnit report: root element <%s>", label, local)
				}
			}
			switch {
			case body != nil:
				// Markup inside a <failure>/<error> body: ignore it.
				if err := d.Skip(); err != nil {
					return Summary{}, parseErr(err)
				}
			case tc != nil:
				switch local {
				case "failure", "error":
					f := &Failure{
						Suite:     nearestSuite(stack),
						Name:      tc.name,
						Classname: tc.classname,
						File:      tc.file,
						Message:   clip(attr(t, "message"), MaxMessage),
						Type:      attr(t, "type"),
						Kind:      KindFailure,
					}
					if local == "error" {
						f.Kind = KindError
					}
					if f.File == "" {
						f.File = nearestFile(stack)
					}
					keep := false
					if local == "failure" && tc.failure == nil {
						tc.failure, keep = f, true
					}
					if local == "error" && tc.errElem == nil {
						tc.errElem, keep = f, true
					}
					if keep {
						body = f
						text.Reset()
					} else if err := d.Skip(); err != nil {
						return Summary{}, parseErr(err)
					}
				case "skipped", "skip":
					tc.skipped = true
					if err := d.Skip(); err != nil {
						return Summary{}, parseErr(err)
					}
				default: // system-out, system-err, properties, flakyFailure, rerunFailure, ...
					if err := d.Skip(); err != nil {
						return Summary{}, parseErr(err)
					}
				}
			case local == "testsuites" || local == "testsuite":
				g := &group{
					suite:     local == "testsuite",
					name:      attr(t, "name"),
					file:      attr(t, "file"),
					aTests:    intAttr(t, "tests"),
					aFailures: intAttr(t, "failures"),
					aErrors:   intAttr(t, "errors"),
					aSkipped:  intAttr(t, "skipped"),
					aTime:     floatAttr(t, "time"),
				}
				if g.aSkipped < 0 {
					g.aSkipped = intAttr(t, "skip") // nose, some xunit writers
				}
				if g.suite {
					sum.Suites++
				}
				stack = append(stack, g)
			case local == "testcase":
				tc = &testCase{
					name:      attr(t, "name"),
					classname: attr(t, "classname"),
					file:      attr(t, "file"),
					time:      max(floatAttr(t, "time"), 0),
				}
				tcDepth = len(stack)
			default: // properties, system-out at suite level, ...
				if err := d.Skip(); err != nil {
					return Summary{}, parseErr(err)
				}
			}
		case xml.EndElement:
			switch {
			case body != nil:
				if body.Message == "" {
					body.Message = clip(FirstLine(text.String()), MaxMessage)
				}
				body = nil
			case tc != nil && len(stack) == tcDepth:
				finishCase()
			case len(stack) > 0:
				finishGroup()
			}
		case xml.CharData:
			if len(stack) == 0 && len(bytes.TrimSpace(t)) > 0 {
				return Summary{}, fmt.Errorf("%s: not a JUnit report: text before the root element", label)
			}
			if body != nil && text.Len() < maxBodyText {
				room := maxBodyText - text.Len()
				if len(t) > room {
					t = t[:room]
				}
				text.Write(t)
			}
		}
	}
	for name, sec := range caseTimes.Timings {
		if _, ok := sum.Timings[name]; !ok {
			sum.addTiming(name, sec)
		}
	}
	return sum, nil
}

func nearestSuite(stack []*group) string {
	for i := len(stack) - 1; i >= 0; i-- {
		if stack[i].suite {
			return stack[i].name
		}
	}
	return ""
}

func nearestFile(stack []*group) string {
	for i := len(stack) - 1; i >= 0; i-- {
		if stack[i].file != "" {
			return stack[i].file
		}
	}
	return ""
}

func attr(t xml.StartElement, name string) string {
	for _, a := range t.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// intAttr is a non-negative integer attribute up to MaxInt32, or -1 when
// absent, out of range or not a number. "1,234" and "3.0" are accepted.
func intAttr(t xml.StartElement, name string) int {
	v := strings.ReplaceAll(strings.TrimSpace(attr(t, name)), ",", "")
	if v == "" {
		return -1
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 || n > math.MaxInt32 {
			return -1
		}
		return n
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > math.MaxInt32 || f != math.Trunc(f) {
		return -1
	}
	return int(f)
}

// maxSeconds bounds a time attribute (about 31 years) so sums stay finite.
const maxSeconds = 1e9

// floatAttr is a non-negative seconds attribute up to maxSeconds, or -1. Thousands
// separators ("1,234.5", written by some Maven Surefire versions) are
// accepted.
func floatAttr(t xml.StartElement, name string) float64 {
	v := strings.ReplaceAll(strings.TrimSpace(attr(t, name)), ",", "")
	if v == "" {
		return -1
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > maxSeconds || math.IsNaN(f) {
		return -1
	}
	return f
}

// charsetReader handles the non-UTF-8 encodings JUnit writers declare.
func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(strings.TrimSpace(charset)) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return input, nil
	case "iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "windows-1252", "cp1252":
		data, err := io.ReadAll(input)
		if err != nil {
			return nil, err
		}
		runes := make([]rune, len(data))
		for i, b := range data {
			runes[i] = rune(b)
		}
		return strings.NewReader(string(runes)), nil
	}
	return nil, fmt.Errorf("unsupported encoding %q", charset)
}
