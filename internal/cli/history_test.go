package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/results"
	"github.com/crabbox-dev/crabbox/internal/runs"
)

// histEnv returns a test env and the run store of its state dir.
func histEnv(t *testing.T) (*testEnv, *runs.Store) {
	t.Helper()
	te := newTestEnv(t)
	return te, runs.New(config.StateDir(config.MapEnv(te.vars)))
}

type histRun struct {
	rec    runs.Record
	log    string
	state  string // "" leaves it running
	exit   int
	took   time.Duration
	result *results.Summary
}

func histAddRun(t *testing.T, s *runs.Store, fr histRun) string {
	t.Helper()
	start := fr.rec.StartedAt
	s.Now = func() time.Time { return start.Add(fr.took) }
	r, err := s.Start(fr.rec)
	if err != nil {
		t.Fatal(err)
	}
	if fr.log != "" {
		fmt.Fprint(r.Log(), fr.log)
	}
	if fr.result != nil {
		if err := r.Update(func(rec *runs.Record) { rec.Results = fr.result }); err != nil {
			t.Fatal(err)
		}
	}
	if fr.state != "" {
		if err := r.Finish(fr.state, fr.exit); err != nil {
			t.Fatal(err)
		}
	}
	return r.ID()
}

func histNoCalls(t *testing.T, te *testEnv) {
	t.Helper()
	if calls := te.fake.Calls(); len(calls) != 0 {
		t.Errorf("unexpected external calls: %v", te.fake.Argvs())
	}
}

var histT0 = time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)

func histSeed(t *testing.T, s *runs.Store) []string {
	t.Helper()
	return []string{
		histAddRun(t, s, histRun{
			rec:   runs.Record{LeaseID: "cbx_aaaaaaaaaaaa", Slug: "blue-crab", Provider: "coder", Command: []string{"go", "test", "./..."}, StartedAt: histT0},
			state: runs.StateSucceeded, took: 12340 * time.Millisecond, log: "ok\n",
		}),
		histAddRun(t, s, histRun{
			rec:   runs.Record{LeaseID: "cbx_aaaaaaaaaaaa", Slug: "blue-crab", Provider: "coder", Command: []string{"pnpm test && echo 'done'"}, Shell: true, StartedAt: histT0.Add(time.Minute)},
			state: runs.StateFailed, exit: 3, took: 450 * time.Millisecond,
		}),
		histAddRun(t, s, histRun{
			rec:   runs.Record{Provider: "coder", Command: []string{"echo", "it's a\nmulti line"}, StartedAt: histT0.Add(2 * time.Minute)},
			state: runs.StateFailed, exit: -1, took: 90 * time.Second,
		}),
		histAddRun(t, s, histRun{ // still running (owned by this test process)
			rec: runs.Record{LeaseID: "cbx_bbbbbbbbbbbb", Slug: "red-crab", Command: []string{"sleep", "60"}, StartedAt: histT0.Add(3 * time.Minute)},
		}),
	}
}

func TestHistoryLines(t *testing.T) {
	te, s := histEnv(t)
	ids := histSeed(t, s)
	code, out, errOut := te.run(t, "history")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := strings.Join([]string{
		ids[3] + " cbx_bbbbbbbbbbbb red-crab running exit=- duration=- started=2026-02-03T04:08:06Z command=sleep 60",
		ids[2] + ` - - failed exit=- duration=1m30s started=2026-02-03T04:07:06Z command=echo 'it'\''s a\nmulti line'`,
		ids[1] + " cbx_aaaaaaaaaaaa blue-crab failed exit=3 duration=450ms started=2026-02-03T04:06:06Z command=pnpm test && echo 'done'",
		ids[0] + " cbx_aaaaaaaaaaaa blue-crab succeeded exit=0 duration=12.3s started=2026-02-03T04:05:06Z command=go test ./...",
	}, "\n") + "\n"
	if out != want {
		t.Errorf("history:\n%s\nwant:\n%s", out, want)
	}

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--lease", "cbx_aaaaaaaaaaaa"}, []string{ids[1], ids[0]}},
		{[]string{"--lease", "red-crab"}, []string{ids[3]}},
		{[]string{"--state", "failed"}, []string{ids[2], ids[1]}},
		{[]string{"--state", "running"}, []string{ids[3]}},
		{[]string{"--limit", "1"}, []string{ids[3]}},
		{[]string{"--limit", "0"}, []string{ids[3], ids[2], ids[1], ids[0]}},
		{[]string{"--lease", "cbx_aaaaaaaaaaaa", "--state", "succeeded", "--limit", "5"}, []string{ids[0]}},
	} {
		code, out, errOut := te.run(t, append([]string{"history"}, tc.args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, errOut)
		}
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			got = append(got, strings.Fields(line)[0])
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("history %v = %v, want %v", tc.args, got, tc.want)
		}
	}
	histNoCalls(t, te)
}

func TestHistoryJSON(t *testing.T) {
	te, s := histEnv(t)
	code, out, _ := te.run(t, "history", "--json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("empty history --json: %d %q", code, out)
	}
	code, out, errOut := te.run(t, "history")
	if code != 0 || out != "" || !strings.Contains(errOut, "no runs recorded") {
		t.Errorf("empty history: %d %q %q", code, out, errOut)
	}

	ids := histSeed(t, s)
	code, out, _ = te.run(t, "history", "--json", "--lease", "blue-crab")
	if code != 0 {
		t.Fatal(code)
	}
	var recs []map[string]any
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(recs) != 2 || recs[0]["id"] != ids[1] || recs[0]["exitCode"] != float64(3) || recs[0]["durationMs"] != float64(450) ||
		recs[0]["shell"] != true || recs[1]["state"] != "succeeded" || recs[1]["leaseId"] != "cbx_aaaaaaaaaaaa" {
		t.Errorf("history --json: %s", out)
	}
	for _, k := range []string{"id", "leaseId", "slug", "provider", "workspace", "repoRoot", "workdir", "command", "state",
		"exitCode", "startedAt", "endedAt", "durationMs", "phases", "syncSkipped", "results", "logTruncated", "pid"} {
		if _, ok := recs[0][k]; !ok {
			t.Errorf("record JSON lacks %q", k)
		}
	}
	if !strings.Contains(out, `"pnpm test && echo 'done'"`) {
		t.Errorf("command escaped: %s", out)
	}
	if strings.Contains(out, `"ID"`) || strings.Contains(out, `"LeaseID"`) {
		t.Errorf("Go field names leak: %s", out)
	}
}

func TestHistoryShowsDeadRunAsInterrupted(t *testing.T) {
	te, s := histEnv(t)
	id := histAddRun(t, s, histRun{rec: runs.Record{LeaseID: "cbx_aaaaaaaaaaaa", StartedAt: histT0}, log: "half way\n"})
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skip(err)
	}
	// Rewrite the record as if that finished process had owned it.
	path := filepath.Join(s.RunDir(id), "run.json")
	data, _ := os.ReadFile(path)
	var rec runs.Record
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	rec.PID, rec.PIDStart = dead.Process.Pid, 0
	data, _ = json.Marshal(rec)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	code, out, _ := te.run(t, "history", "--state", "running")
	if code != 0 || out != "" {
		t.Errorf("dead run listed as running: %q", out)
	}
	code, out, _ = te.run(t, "history")
	if code != 0 || !strings.Contains(out, id+" cbx_aaaaaaaaaaaa - interrupted exit=- duration=") {
		t.Errorf("history: %q", out)
	}
}

func TestHistoryWarnsAboutBrokenRecords(t *testing.T) {
	te, s := histEnv(t)
	histSeed(t, s)
	writeFile(t, filepath.Join(s.RunsDir(), "run_000000000000", "run.json"), `{"id": "run_0000`)
	code, out, errOut := te.run(t, "history")
	if code != 0 || strings.Count(out, "\n") != 4 || !strings.Contains(errOut, "warning: skipped 1 unreadable run record") {
		t.Errorf("exit %d\n%s\n%s", code, out, errOut)
	}
}

func TestHistoryUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"history", "--state", "done"},
		{"history", "--state", "RUNNING"},
		{"history", "--limit", "-1"},
		{"history", "--limit", "x"},
		{"history", "extra"},
		{"logs"},
		{"logs", "a", "b"},
		{"logs", "not-a-run"},
		{"logs", "run_0123456789AB"},
		{"logs", "run_0123456789ab", "--tail", "-1"},
		{"results"},
		{"results", "cbx_0123456789ab"},
	} {
		te, _ := histEnv(t)
		code, _, errOut := te.run(t, args...)
		if code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", args, code, errOut)
		}
	}
}

func TestLogs(t *testing.T) {
	te, s := histEnv(t)
	id := histAddRun(t, s, histRun{
		rec: runs.Record{LeaseID: "cbx_aaaaaaaaaaaa", StartedAt: histT0}, state: runs.StateFailed, exit: 1,
		log: "line 1\nline 2\nline 3\n",
	})
	code, out, errOut := te.run(t, "logs", id)
	if code != 0 || out != "line 1\nline 2\nline 3\n" || errOut != "" {
		t.Errorf("logs: %d %q %q", code, out, errOut)
	}
	code, out, _ = te.run(t, "logs", id, "--tail", "2")
	if code != 0 || out != "line 2\nline 3\n" {
		t.Errorf("logs --tail 2: %d %q", code, out)
	}
	code, out, _ = te.run(t, "logs", id, "--json", "--tail", "1")
	var v struct {
		Run          map[string]any `json:"run"`
		Log          *string        `json:"log"`
		LogTruncated *bool          `json:"logTruncated"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 0 {
		t.Fatalf("logs --json: %d %v %s", code, err, out)
	}
	if v.Run["id"] != id || v.Run["state"] != "failed" || v.Log == nil || *v.Log != "line 3\n" || v.LogTruncated == nil || *v.LogTruncated {
		t.Errorf("logs --json: %s", out)
	}

	code, _, errOut = te.run(t, "logs", "run_0123456789ab")
	if code != 5 || !strings.Contains(errOut, "run run_0123456789ab not found") {
		t.Errorf("unknown run: %d %q", code, errOut)
	}
	histNoCalls(t, te)
}

func TestLogsTruncatedAndRunning(t *testing.T) {
	te, s := histEnv(t)
	r, err := s.Start(runs.Record{})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 1023) + "\n"
	for range 9 * 1024 { // 9 MiB
		r.Log().Write([]byte(line))
	}
	code, out, errOut := te.run(t, "logs", r.ID())
	if code != 0 || len(out) != runs.MaxLogBytes || !strings.Contains(errOut, "output truncated") || !strings.Contains(errOut, "still running") {
		t.Errorf("exit %d, %d bytes, stderr %q", code, len(out), errOut)
	}
	code, out, _ = te.run(t, "logs", r.ID(), "--json", "--tail", "3")
	if code != 0 || !strings.Contains(out, `"logTruncated": true`) || !strings.Contains(out, `"state": "running"`) {
		t.Errorf("--json: %s", out)
	}
}

func TestResults(t *testing.T) {
	te, s := histEnv(t)
	sum, err := results.ParseJUnit("junit.xml", []byte(`<testsuites><testsuite name="pkg/a" time="12.3">
		<testcase name="TestOK"/><testcase name="TestBad"><failure message="got 1&#10;want 2"/></testcase>
		<testcase name="TestBoom"><error type="panic"/></testcase><testcase name="TestSkip"><skipped/></testcase>
		</testsuite></testsuites>`))
	if err != nil {
		t.Fatal(err)
	}
	withResults := histAddRun(t, s, histRun{rec: runs.Record{StartedAt: histT0}, state: runs.StateFailed, exit: 1, result: &sum})
	clean, _ := results.ParseJUnit("ok.xml", []byte(`<testsuite name="s"><testcase name="t"/></testsuite>`))
	allGreen := histAddRun(t, s, histRun{rec: runs.Record{StartedAt: histT0}, state: runs.StateSucceeded, result: &clean})
	none := histAddRun(t, s, histRun{rec: runs.Record{StartedAt: histT0}, state: runs.StateSucceeded})

	check := func(wantOut string, args ...string) {
		t.Helper()
		code, out, errOut := te.run(t, args...)
		if code != 0 || out != wantOut {
			t.Errorf("%v: exit %d\n%s\nwant\n%s(stderr %q)", args, code, out, wantOut, errOut)
		}
	}
	check("results format=junit files=1 suites=1 tests=4 failures=1 errors=1 skipped=1 time=12.3s\n"+
		"failed: pkg/a TestBad got 1\n"+
		"failed: pkg/a TestBoom error\n", "results", withResults)
	check("failed: pkg/a TestBad got 1\nfailed: pkg/a TestBoom error\n", "results", withResults, "--failed-only")
	check("results format=junit files=1 suites=1 tests=1 failures=0 errors=0 skipped=0 time=0s\n", "results", allGreen)
	check("", "results", allGreen, "--failed-only")
	check("no test results recorded for "+none+"\n", "results", none)
	check("null\n", "results", none, "--json")
	check("[]\n", "results", none, "--json", "--failed-only")
	check("[]\n", "results", allGreen, "--json", "--failed-only")

	code, out, _ := te.run(t, "results", withResults, "--json")
	var got results.Summary
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 || !reflect.DeepEqual(got, sum) {
		t.Errorf("results --json: %d %v\n%s", code, err, out)
	}
	code, out, _ = te.run(t, "results", withResults, "--json", "--failed-only")
	var failed []results.Failure
	if err := json.Unmarshal([]byte(out), &failed); err != nil || code != 0 || !reflect.DeepEqual(failed, sum.Failed) {
		t.Errorf("results --json --failed-only: %d %v\n%s", code, err, out)
	}
	if !strings.Contains(out, `"kind": "error"`) || !strings.Contains(out, `"message": "got 1\nwant 2"`) {
		t.Errorf("failed JSON: %s", out)
	}

	code, _, errOut := te.run(t, "results", "run_0123456789ab")
	if code != 5 || !strings.Contains(errOut, "not found") {
		t.Errorf("unknown run: %d %q", code, errOut)
	}
	histNoCalls(t, te)
}

func TestHistoryHelpHasExitStatus(t *testing.T) {
	for _, c := range []string{"history", "logs", "results"} {
		te := newTestEnv(t)
		code, out, _ := te.run(t, c, "--help")
		if code != 0 || !strings.Contains(out, "EXIT STATUS") {
			t.Errorf("%s --help: %d\n%s", c, code, out)
		}
	}
}

func TestHistoryWithoutStateDir(t *testing.T) {
	te := newTestEnv(t)
	delete(te.vars, "HOME")
	delete(te.vars, "XDG_STATE_HOME")
	for _, args := range [][]string{{"history"}, {"logs", "run_0123456789ab"}, {"results", "run_0123456789ab"}} {
		code, _, errOut := te.run(t, args...)
		if code != 2 || !strings.Contains(errOut, "state directory") {
			t.Errorf("%v: %d %q", args, code, errOut)
		}
	}
}

func TestHistCommand(t *testing.T) {
	for _, tc := range []struct {
		argv  []string
		shell bool
		want  string
	}{
		{nil, false, "-"},
		{[]string{"go", "test", "-run", "TestX/a b", ""}, false, `go test -run 'TestX/a b' ''`},
		{[]string{"make test | tee out"}, true, "make test | tee out"},
		{[]string{"printf", "a\tb\x1b[31m"}, false, `printf 'a\tb\x1b[31m'`},
		{[]string{"K=v", "./x.sh", "a,b", "@f", "%"}, false, "K=v ./x.sh a,b @f %"},
	} {
		if got := runs.CommandLine(tc.argv, tc.shell); got != tc.want {
			t.Errorf("runs.CommandLine(%q, %v) = %q, want %q", tc.argv, tc.shell, got, tc.want)
		}
	}
}
