package results

import (
	"encoding/json"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

type counts struct {
	suites, tests, failures, errors, skipped int
	time                                     float64
}

func countsOf(s Summary) counts {
	return counts{s.Suites, s.Tests, s.Failures, s.Errors, s.Skipped, s.TimeSeconds}
}

func TestParseJUnitRealWorldReports(t *testing.T) {
	cases := []struct {
		file   string
		want   counts
		failed []Failure
	}{
		{
			file: "go-junit-report.xml",
			want: counts{1, 4, 1, 0, 1, 0.012},
			failed: []Failure{{
				Suite: "github.com/acme/pkg", Name: "TestSub", Classname: "github.com/acme/pkg",
				Message: "Failed", Kind: KindFailure,
			}},
		},
		{
			file: "pytest.xml",
			want: counts{1, 4, 1, 1, 1, 0.123},
			failed: []Failure{
				{Suite: "pytest", Name: "test_bad", Classname: "tests.test_math", Message: "assert 1 == 2", Kind: KindFailure},
				{Suite: "pytest", Name: "test_fixture", Classname: "tests.test_math", Message: `failed on setup with "fixture 'db' not found"`, Kind: KindError},
			},
		},
		{
			// The root's wall-clock time wins over the sum of the suites;
			// skipped is missing on the root and derived from the suites.
			file: "jest-junit.xml",
			want: counts{2, 3, 1, 0, 1, 2.345},
			failed: []Failure{{
				Suite: "sum", Name: "sum handles negatives", Classname: "sum handles negatives",
				File:    "/repo/src/sum.test.js",
				Message: "Error: expect(received).toBe(expected) // Object.is equality", Kind: KindFailure,
			}},
		},
		{
			// Bare <testsuite> root, thousands separator in time, a flaky
			// (eventually passing) test that is not a failure.
			file: "surefire.xml",
			want: counts{1, 5, 1, 1, 1, 1234.5},
			failed: []Failure{
				{Suite: "com.example.AppTest", Name: "testFail", Classname: "com.example.AppTest", Message: "expected: <1> but was: <2>", Type: "org.opentest4j.AssertionFailedError", Kind: KindFailure},
				{Suite: "com.example.AppTest", Name: "testBoom", Classname: "com.example.AppTest", Message: "boom", Type: "java.lang.IllegalStateException", Kind: KindError},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			s, err := ParseJUnit(tc.file, data)
			if err != nil {
				t.Fatal(err)
			}
			if got := countsOf(s); got != tc.want {
				t.Errorf("counts = %+v, want %+v", got, tc.want)
			}
			if !reflect.DeepEqual(s.Files, []string{tc.file}) || s.Format != "junit" {
				t.Errorf("format %q files %v", s.Format, s.Files)
			}
			if !reflect.DeepEqual(s.Failed, tc.failed) {
				t.Errorf("failed =\n%#v\nwant\n%#v", s.Failed, tc.failed)
			}
			if !s.HasFailures() {
				t.Error("HasFailures = false")
			}
		})
	}
}

func TestParseJUnitDerivesCountsFromCases(t *testing.T) {
	cases := []struct {
		name, xml string
		want      counts
		failed    []Failure
	}{
		{
			name: "no attributes, nested suites",
			xml: `<testsuites><testsuite name="a"><testcase name="x" time="0.25"/>
				<testcase name="y" classname="A"><failure message="m" type="T">body</failure></testcase>
				<testsuite name="inner" file="inner.js"><testcase name="z" time="0.5"><error/></testcase>
				<testcase name="w"><skipped/></testcase></testsuite></testsuite></testsuites>`,
			want: counts{2, 4, 1, 1, 1, 0.75},
			failed: []Failure{
				{Suite: "a", Name: "y", Classname: "A", Message: "m", Type: "T", Kind: KindFailure},
				{Suite: "inner", Name: "z", File: "inner.js", Kind: KindError},
			},
		},
		{
			name: "parent attributes aggregate nested suites (not double counted)",
			xml: `<testsuites><testsuite name="Root Suite" tests="2" failures="1" time="1.5">
				<testsuite name="child" tests="2" failures="1" time="1.5"><testcase name="a"/>
				<testcase name="b"><failure>boom
at x</failure></testcase></testsuite></testsuite></testsuites>`,
			want:   counts{2, 2, 1, 0, 0, 1.5},
			failed: []Failure{{Suite: "child", Name: "b", Message: "boom", Kind: KindFailure}},
		},
		{
			name:   "bad attributes fall back to derived",
			xml:    `<testsuite name="s" tests="many" failures="-1" time="NaN"><testcase name="a" time="2"><failure/></testcase></testsuite>`,
			want:   counts{1, 1, 1, 0, 0, 2},
			failed: []Failure{{Suite: "s", Name: "a", Kind: KindFailure}},
		},
		{
			name: "failure and error on one case, repeated failures kept once",
			xml: `<testsuite name="s"><testcase name="a"><failure message="f1"/><failure message="f2"/>
				<error message="teardown"/></testcase></testsuite>`,
			want: counts{1, 1, 1, 1, 0, 0},
			failed: []Failure{
				{Suite: "s", Name: "a", Message: "f1", Kind: KindFailure},
				{Suite: "s", Name: "a", Message: "teardown", Kind: KindError},
			},
		},
		{
			name:   "empty testsuites",
			xml:    `<?xml version="1.0"?><!-- none --><testsuites/>`,
			want:   counts{},
			failed: []Failure{},
		},
		{
			name:   "latin-1 encoding, skip attribute",
			xml:    "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><testsuite name=\"caf\xe9\" skip=\"0\"><testcase name=\"t\"><failure message=\"\xe9chec\"/></testcase></testsuite>",
			want:   counts{1, 1, 1, 0, 0, 0},
			failed: []Failure{{Suite: "café", Name: "t", Message: "échec", Kind: KindFailure}},
		},
		{
			name:   "utf-8 BOM and namespaces",
			xml:    "\xef\xbb\xbf<j:testsuite xmlns:j=\"urn:x\" name=\"s\" tests=\"1\"><j:testcase name=\"t\"/></j:testsuite>",
			want:   counts{1, 1, 0, 0, 0, 0},
			failed: []Failure{},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseJUnit("r.xml", []byte(tc.xml))
			if err != nil {
				t.Fatal(err)
			}
			if got := countsOf(s); got != tc.want {
				t.Errorf("counts = %+v, want %+v", got, tc.want)
			}
			if !reflect.DeepEqual(s.Failed, tc.failed) {
				t.Errorf("failed =\n%#v\nwant\n%#v", s.Failed, tc.failed)
			}
		})
	}
}

func TestParseJUnitRejectsMalformed(t *testing.T) {
	for _, in := range []string{
		"",
		"   \n",
		"not xml at all",
		"<testsuite name=\"s\"><testcase name=\"a\">",  // truncated
		"<testsuite><testcase></testsuite></testcase>", // mismatched
		"<testsuite name=\"a&b\"></testsuite>",         // bad entity
		"<html><body/></html>",                         // not JUnit
		"<?xml version=\"1.0\" encoding=\"EBCDIC\"?><testsuite/>",
		"<!-- only a comment -->",
	} {
		if s, err := ParseJUnit("bad.xml", []byte(in)); err == nil {
			t.Errorf("ParseJUnit(%q) = %+v, want error", in, s)
		} else if !strings.HasPrefix(err.Error(), "bad.xml: ") {
			t.Errorf("error %q does not name the file", err)
		}
	}
}

func TestParseJUnitCapsFailedAndMessages(t *testing.T) {
	var b strings.Builder
	b.WriteString(`<testsuite name="big">`)
	long := strings.Repeat("é", MaxMessage) // 2 bytes each
	for range MaxFailed + 10 {
		b.WriteString(`<testcase name="t"><failure message="` + long + `"/></testcase>`)
	}
	b.WriteString(`</testsuite>`)
	s, err := ParseJUnit("big.xml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if s.Failures != MaxFailed+10 || len(s.Failed) != MaxFailed {
		t.Errorf("failures=%d len(failed)=%d", s.Failures, len(s.Failed))
	}
	if m := s.Failed[0].Message; len(m) > MaxMessage || !strings.HasPrefix(long, m) {
		t.Errorf("message not clipped at a rune boundary: %d bytes", len(m))
	}
}

func TestMergeAndLine(t *testing.T) {
	a, err := ParseJUnit("a.xml", []byte(`<testsuite name="a" time="1.25"><testcase name="x"><failure message="m"/></testcase></testsuite>`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseJUnit("b.xml", []byte(`<testsuites><testsuite name="b" time="11.05"><testcase name="y"/><testcase name="z"><skipped/></testcase></testsuite></testsuites>`))
	if err != nil {
		t.Fatal(err)
	}
	m := Merge(a, b)
	want := "results format=junit files=2 suites=2 tests=3 failures=1 errors=0 skipped=1 time=12.3s"
	if got := m.Line(); got != want {
		t.Errorf("Line() = %q, want %q", got, want)
	}
	if !m.HasFailures() || b.HasFailures() {
		t.Errorf("HasFailures merged=%v b=%v", m.HasFailures(), b.HasFailures())
	}
	if len(m.Failed) != 1 || m.Failed[0].Suite != "a" {
		t.Errorf("failed = %+v", m.Failed)
	}
	if got := Merge().Line(); got != "results format=junit files=0 suites=0 tests=0 failures=0 errors=0 skipped=0 time=0s" {
		t.Errorf("empty Line() = %q", got)
	}
	if got := (Summary{TimeSeconds: 0.0504}).Line(); !strings.HasSuffix(got, " time=0.05s") {
		t.Errorf("Line() = %q", got)
	}
}

func TestSummaryJSONShape(t *testing.T) {
	data, err := json.Marshal(Summary{})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"format":"junit","files":[],"suites":0,"tests":0,"failures":0,"errors":0,"skipped":0,"timeSeconds":0,"failed":[]}`
	if string(data) != want {
		t.Errorf("got  %s\nwant %s", data, want)
	}
	s, _ := ParseJUnit("r.xml", []byte(`<testsuite name="s"><testcase name="t" classname="c" file="f.go"><error message="m" type="E"/></testcase></testsuite>`))
	data, _ = json.Marshal(s)
	var back struct {
		Failed []map[string]string `json:"failed"`
	}
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	wantF := map[string]string{"suite": "s", "name": "t", "classname": "c", "file": "f.go", "message": "m", "type": "E", "kind": "error"}
	if len(back.Failed) != 1 || !reflect.DeepEqual(back.Failed[0], wantF) {
		t.Errorf("failed JSON = %s", data)
	}
	// Pointers marshal the same way (the run record stores *Summary).
	p, _ := json.Marshal(&Summary{})
	if !strings.Contains(string(p), `"failed":[]`) {
		t.Errorf("pointer JSON = %s", p)
	}
}

func FuzzParseJUnit(f *testing.F) {
	entries, _ := os.ReadDir("testdata")
	for _, e := range entries {
		if data, err := os.ReadFile(filepath.Join("testdata", e.Name())); err == nil && strings.HasSuffix(e.Name(), ".xml") {
			f.Add(data)
		}
	}
	f.Add([]byte(`<testsuites><testsuite name="a"><testcase name="x"><failure>m</failure></testcase><testsuite><testcase/></testsuite></testsuite></testsuites>`))
	f.Add([]byte(`<testsuite tests="1,0" time="1e400"><testcase time="-1"><error><b>x</b></error><skipped/></testcase></testsuite>`))
	f.Add([]byte("<?xml version=\"1.0\" encoding=\"latin1\"?><testsuite name=\"\xff\"/>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseJUnit("fuzz.xml", data)
		if err != nil {
			return
		}
		if s.Suites < 0 || s.Tests < 0 || s.Failures < 0 || s.Errors < 0 || s.Skipped < 0 ||
			s.TimeSeconds < 0 || math.IsNaN(s.TimeSeconds) || len(s.Failed) > MaxFailed {
			t.Fatalf("bad summary %+v", s)
		}
		for _, fl := range s.Failed {
			if len(fl.Message) > MaxMessage || (fl.Kind != KindFailure && fl.Kind != KindError) {
				t.Fatalf("bad failure %+v", fl)
			}
		}
		_ = s.Line()
		if _, err := json.Marshal(s); err != nil {
			t.Fatal(err)
		}
	})
}

// Suite timings are kept by name and file, nested suites included, and add
// up across reports; a report without suites has none.
func TestTimings(t *testing.T) {
	a, err := ParseJUnit("a.xml", []byte(`<testsuites><testsuite name="pkg/a" file="a_test.go" time="2.5"><testcase name="x" time="2.5"/></testsuite><testsuite name="pkg/b"><testcase name="y" time="0.75"/></testsuite></testsuites>`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseJUnit("b.xml", []byte(`<testsuite name="pkg/a" time="1"><testcase name="z"/></testsuite>`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"pkg/a": 2.5, "a_test.go": 2.5, "pkg/b": 0.75}
	if !maps.Equal(a.Timings, want) {
		t.Fatalf("timings = %v, want %v", a.Timings, want)
	}
	m := Merge(a, b)
	if m.Timings["pkg/a"] != 3.5 || m.Timings["pkg/b"] != 0.75 {
		t.Fatalf("merged timings = %v", m.Timings)
	}
	// pytest: one suite, the modules in the cases' classname and file;
	// a case's classname that is a suite's name is not counted twice.
	py, err := ParseJUnit("py.xml", []byte(`<testsuites><testsuite name="pytest" time="4"><testcase classname="tests.test_a" file="tests/test_a.py" name="t1" time="1.5"/><testcase classname="tests.test_a" file="tests/test_a.py" name="t2" time="0.5"/><testcase classname="tests.test_b" name="t3" time="2"/><testcase classname="pytest" name="t4" time="9"/></testsuite></testsuites>`))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]float64{"pytest": 4, "tests.test_a": 2, "tests/test_a.py": 2, "tests.test_b": 2}; !maps.Equal(py.Timings, want) {
		t.Fatalf("pytest timings = %v, want %v", py.Timings, want)
	}
	none, err := ParseJUnit("c.xml", []byte(`<testsuites tests="0"></testsuites>`))
	if err != nil {
		t.Fatal(err)
	}
	if none.Timings != nil {
		t.Fatalf("timings without suites = %v", none.Timings)
	}
}
