package runs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/results"
)

// The test binary doubles as a crabbox-like process that owns runs (see
// helperMain) so liveness and cross-process writes are tested for real.
func TestMain(m *testing.M) {
	if mode := os.Getenv("CRABBOX_RUNS_HELPER"); mode != "" {
		helperMain(mode, os.Getenv("CRABBOX_RUNS_STATE"))
		return
	}
	os.Exit(m.Run())
}

func helperMain(mode, stateDir string) {
	s := New(stateDir)
	r, err := s.Start(Record{LeaseID: "cbx_aaaaaaaaaaaa", Command: []string{"helper", mode}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	switch mode {
	case "hang":
		fmt.Fprintln(r.Log(), "started")
		fmt.Println(r.ID())
		_, _ = io.Copy(io.Discard, os.Stdin) // until killed
		os.Exit(0)
	case "finish":
		<-time.After(time.Until(parseTime(os.Getenv("CRABBOX_RUNS_AT")))) // line up the finishers
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for range 16 {
			_, _ = r.Log().Write(chunk)
		}
		if err := r.Finish(StateSucceeded, 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		fmt.Println(r.ID())
		os.Exit(0)
	}
	os.Exit(4)
}

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

func helper(t *testing.T, mode, stateDir string, extraEnv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{"CRABBOX_RUNS_HELPER=" + mode, "CRABBOX_RUNS_STATE=" + stateDir}, extraEnv...)...)
	cmd.Stderr = os.Stderr
	return cmd
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestLifecycle(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state", "crabbox")
	s := New(state)
	clock := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	s.Now = func() time.Time { return clock }

	r, err := s.Start(Record{
		LeaseID: "cbx_0123456789ab", Slug: "blue-crab", Provider: "coder", Workspace: "me/crabbox-blue-crab",
		RepoRoot: "/src/app", Workdir: "/home/coder/crabbox/cbx_0123456789ab/app",
		Command: []string{"go", "test", "./..."},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !lease.IsRunID(r.ID()) {
		t.Fatalf("minted ID %q", r.ID())
	}
	for path, want := range map[string]os.FileMode{
		filepath.Join(state, "runs"):           0o700,
		r.Dir():                                0o700,
		filepath.Join(r.Dir(), "run.json"):     0o600,
		filepath.Join(r.Dir(), "output.0.log"): 0o600,
		state:                                  0o700, // created by Start
		filepath.Dir(state):                    0o700,
	} {
		if got := mode(t, path); got != want {
			t.Errorf("%s: mode %o, want %o", path, got, want)
		}
	}

	got, err := s.Get(r.ID())
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateRunning || got.PID != os.Getpid() || got.ExitCode != nil || !got.StartedAt.Equal(clock) {
		t.Errorf("started record %+v", got)
	}

	fmt.Fprintln(r.Log(), "compiling")
	fmt.Fprint(r.Log(), "--- FAIL: TestX\n")
	sum, _ := results.ParseJUnit("junit.xml", []byte(`<testsuite name="s"><testcase name="TestX"><failure message="boom"/></testcase></testsuite>`))
	if err := r.Update(func(rec *Record) {
		rec.Phases = append(rec.Phases, Phase{Name: "sync", Ms: 1200}, Phase{Name: "bootstrap", Skipped: true, Reason: "reused"})
		rec.SyncSkipped = true
		rec.Results = &sum
		rec.State = StateSucceeded // ignored: Finish ends a run
	}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(r.ID()); got.State != StateRunning || len(got.Phases) != 2 || got.Results == nil || got.LogBytes != 26 {
		t.Errorf("after Update: %+v", got)
	}

	clock = clock.Add(90*time.Second + 500*time.Millisecond)
	if err := r.Finish(StateFailed, 3); err != nil {
		t.Fatal(err)
	}
	if err := r.Finish(StateSucceeded, 0); err != nil { // no-op
		t.Fatal(err)
	}
	fmt.Fprintln(r.Log(), "after finish") // dropped

	got, err = s.Get(r.ID())
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateFailed || got.ExitCode == nil || *got.ExitCode != 3 || got.Duration() != 90500*time.Millisecond {
		t.Errorf("finished record %+v", got)
	}
	if got.Results.Failures != 1 || got.Results.Failed[0].Message != "boom" {
		t.Errorf("results %+v", got.Results)
	}
	log, truncated, err := s.ReadLog(r.ID(), 0)
	if err != nil || truncated || log != "compiling\n--- FAIL: TestX\n" {
		t.Errorf("ReadLog = %q, %v, %v", log, truncated, err)
	}
	if tail, _, _ := s.ReadLog(r.ID(), 1); tail != "--- FAIL: TestX\n" {
		t.Errorf("tail 1 = %q", tail)
	}

	// JSON: lowerCamel keys, computed durationMs.
	data, _ := json.Marshal(got)
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "leaseId", "slug", "provider", "workspace", "repoRoot", "workdir", "command", "shell",
		"state", "exitCode", "startedAt", "endedAt", "durationMs", "phases", "syncSkipped", "results", "logTruncated", "logBytes", "pid"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, data)
		}
	}
	if m["durationMs"] != float64(90500) || m["endedAt"] != "2026-03-01T10:01:30.5Z" {
		t.Errorf("durationMs %v endedAt %v", m["durationMs"], m["endedAt"])
	}
	var back Record
	if err := json.Unmarshal(data, &back); err != nil || !reflect.DeepEqual(&back, got) {
		t.Errorf("round trip:\n%+v\n%+v (%v)", back, *got, err)
	}
}

func TestRunningRecordJSON(t *testing.T) {
	data, err := json.Marshal(Record{ID: "run_000000000000", State: StateRunning})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"command":[]`, `"phases":[]`, `"endedAt":null`, `"durationMs":null`, `"exitCode":null`, `"results":null`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("%s lacks %s", data, want)
		}
	}
}

func TestLogKeepsLast8MiB(t *testing.T) {
	s := New(t.TempDir())
	r, err := s.Start(Record{Command: []string{"yes"}})
	if err != nil {
		t.Fatal(err)
	}
	// 20 MiB of a position-dependent pattern in odd-sized writes.
	const total = 20 << 20
	all := make([]byte, total)
	for i := range all {
		all[i] = byte('a' + (i*7+i/1000)%26)
	}
	for off, step := 0, 1; off < total; step = step*3%99991 + 1 {
		end := min(off+step, total)
		if n, err := r.Log().Write(all[off:end]); n != end-off || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		off = end
	}
	check := func(when string) {
		t.Helper()
		log, truncated, err := s.ReadLog(r.ID(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if !truncated || len(log) != MaxLogBytes || log != string(all[total-MaxLogBytes:]) {
			t.Errorf("%s: truncated=%v len=%d, want the last %d bytes", when, truncated, len(log), MaxLogBytes)
		}
	}
	check("running")
	if err := r.Finish(StateSucceeded, 0); err != nil {
		t.Fatal(err)
	}
	check("finished")
	rec, _ := s.Get(r.ID())
	if !rec.LogTruncated || rec.LogBytes != total {
		t.Errorf("LogTruncated=%v LogBytes=%d", rec.LogTruncated, rec.LogBytes)
	}
	segs, _ := filepath.Glob(filepath.Join(r.Dir(), "output.*.log"))
	if len(segs) != 2 {
		t.Errorf("segments on disk: %v", segs)
	}
	if r.LogErr() != nil {
		t.Error(r.LogErr())
	}
}

func TestLogExactly8MiBIsNotTruncated(t *testing.T) {
	s := New(t.TempDir())
	r, _ := s.Start(Record{})
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	for range MaxLogBytes / len(chunk) {
		r.Log().Write(chunk)
	}
	if _, truncated, _ := s.ReadLog(r.ID(), 0); truncated {
		t.Error("exactly 8 MiB reported truncated")
	}
	r.Log().Write([]byte("!"))
	log, truncated, _ := s.ReadLog(r.ID(), 0)
	if !truncated || len(log) != MaxLogBytes || !strings.HasSuffix(log, "f!") || !strings.HasPrefix(log, "123456789abcdef0") {
		t.Errorf("8 MiB + 1: truncated=%v len=%d", truncated, len(log))
	}
}

func TestReadLogTail(t *testing.T) {
	s := New(t.TempDir())
	r, _ := s.Start(Record{})
	fmt.Fprint(r.Log(), "a\nb\nc\n")
	for tail, want := range map[int]string{0: "a\nb\nc\n", 1: "c\n", 2: "b\nc\n", 3: "a\nb\nc\n", 10: "a\nb\nc\n"} {
		if got, _, _ := s.ReadLog(r.ID(), tail); got != want {
			t.Errorf("tail %d = %q, want %q", tail, got, want)
		}
	}
	fmt.Fprint(r.Log(), "partial")
	if got, _, _ := s.ReadLog(r.ID(), 2); got != "c\npartial" {
		t.Errorf("tail 2 without final newline = %q", got)
	}
}

// A running record whose owner exited is reported and rewritten as
// interrupted, ending at its last log write.
func TestDeadOwnerIsInterrupted(t *testing.T) {
	s := New(t.TempDir())
	clock := time.Now().UTC().Add(-time.Hour)
	s.Now = func() time.Time { return clock }
	r, err := s.Start(Record{LeaseID: "cbx_0123456789ab"})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(r.Log(), "working")

	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skip("no true(1):", err)
	}
	if err := r.Update(func(rec *Record) { rec.PID, rec.PIDStart = dead.Process.Pid, 0 }); err != nil {
		t.Fatal(err)
	}
	logInfo, _ := os.Stat(filepath.Join(r.Dir(), "output.0.log"))

	if recs, _ := s.List(Filter{State: StateRunning}); len(recs) != 0 {
		t.Errorf("dead run listed as running: %+v", recs)
	}
	got, err := New(s.Dir).Get(r.ID())
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateInterrupted || got.ExitCode != nil || !got.EndedAt.Equal(logInfo.ModTime().UTC()) || got.LogBytes != 8 {
		t.Errorf("got %+v, want interrupted ending %v", got, logInfo.ModTime())
	}
	onDisk, err := readRecord(r.Dir(), r.ID())
	if err != nil || onDisk.State != StateInterrupted {
		t.Errorf("run.json not rewritten: %+v %v", onDisk, err)
	}
	if recs, _ := s.List(Filter{State: StateInterrupted}); len(recs) != 1 {
		t.Errorf("interrupted list: %+v", recs)
	}
}

// A live PID whose start time differs from the recorded one is a reused PID.
func TestReusedPIDIsInterrupted(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("start times come from /proc")
	}
	s := New(t.TempDir())
	r, _ := s.Start(Record{})
	rec := r.Record()
	if rec.PIDStart == 0 {
		t.Fatal("no PIDStart recorded")
	}
	if got, _ := s.Get(r.ID()); got.State != StateRunning {
		t.Fatalf("own run not running: %s", got.State)
	}
	r.Update(func(rec *Record) { rec.PIDStart++ })
	// No output: it ends when its (empty) log was created.
	if got, _ := s.Get(r.ID()); got.State != StateInterrupted || got.EndedAt.Before(got.StartedAt) || got.Duration() > time.Second {
		t.Errorf("reused PID: %s ended %v started %v", got.State, got.EndedAt, got.StartedAt)
	}
}

// A real owner process: running while it lives, interrupted once killed.
func TestKilledOwnerProcessIsInterrupted(t *testing.T) {
	state := t.TempDir()
	cmd := helper(t, "hang", state)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper: %v", err)
	}
	id := strings.TrimSpace(line)
	s := New(state)
	if got, err := s.Get(id); err != nil || got.State != StateRunning || got.PID != cmd.Process.Pid {
		t.Errorf("live helper run: %+v %v", got, err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	got, err := s.Get(id)
	if err != nil || got.State != StateInterrupted {
		t.Fatalf("killed helper run: %+v %v", got, err)
	}
	if log, _, _ := s.ReadLog(id, 0); log != "started\n" {
		t.Errorf("log %q", log)
	}
}

// Eight processes finishing runs at the same moment lose nothing.
func TestConcurrentProcessesFinishing(t *testing.T) {
	state := t.TempDir()
	at := time.Now().Add(500 * time.Millisecond).Format(time.RFC3339Nano)
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for range 8 {
		cmd := helper(t, "finish", state, "CRABBOX_RUNS_AT="+at)
		out := &bytes.Buffer{}
		cmd.Stdout = out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	var ids []string
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v", i, err)
		}
		ids = append(ids, strings.TrimSpace(outs[i].String()))
	}
	recs, skipped, err := New(state).Scan(Filter{})
	if err != nil || skipped != 0 || len(recs) != 8 {
		t.Fatalf("Scan: %d records, %d skipped, %v", len(recs), skipped, err)
	}
	var got []string
	for _, r := range recs {
		if r.State != StateSucceeded || r.LogBytes != 1<<20 {
			t.Errorf("record %+v", r)
		}
		got = append(got, r.ID)
	}
	sort.Strings(got)
	sort.Strings(ids)
	if !reflect.DeepEqual(got, ids) {
		t.Errorf("ids %v, want %v", got, ids)
	}
}

func TestConcurrentGoroutineRuns(t *testing.T) {
	state := t.TempDir()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			s := New(state)
			r, err := s.Start(Record{Slug: fmt.Sprint("s", i)})
			if err != nil {
				t.Error(err)
				return
			}
			fmt.Fprintf(r.Log(), "run %d\n", i)
			if err := r.Finish(StateSucceeded, 0); err != nil {
				t.Error(err)
			}
			// Readers racing with other writers see whole records.
			if _, skipped, err := s.Scan(Filter{}); skipped != 0 || err != nil {
				t.Errorf("Scan: skipped %d, %v", skipped, err)
			}
		})
	}
	wg.Wait()
	if recs, _ := New(state).List(Filter{State: StateSucceeded}); len(recs) != 8 {
		t.Errorf("%d records", len(recs))
	}
}

// stdout and stderr copiers write to Log at once; no line is torn or lost.
func TestConcurrentLogWriters(t *testing.T) {
	s := New(t.TempDir())
	r, _ := s.Start(Record{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for n := range 2000 {
				fmt.Fprintf(r.Log(), "writer %d line %04d %s\n", g, n, strings.Repeat("z", n%300))
			}
		})
	}
	wg.Add(1)
	go func() { // a reader while writing
		defer wg.Done()
		for range 20 {
			if _, _, err := s.ReadLog(r.ID(), 5); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	r.Finish(StateSucceeded, 0)
	log, truncated, err := s.ReadLog(r.ID(), 0)
	if err != nil || truncated {
		t.Fatal(err, truncated)
	}
	lines := strings.Split(strings.TrimSuffix(log, "\n"), "\n")
	if len(lines) != 16000 {
		t.Fatalf("%d lines", len(lines))
	}
	seen := map[string]bool{}
	for _, l := range lines {
		var g, n int
		f := strings.Fields(l)
		_, err := fmt.Sscanf(l, "writer %d line %d", &g, &n)
		z := ""
		if len(f) == 5 {
			z = f[4]
		}
		if err != nil || len(f) < 4 || len(z) != n%300 || strings.Trim(z, "z") != "" {
			t.Fatalf("torn line %q", l)
		}
		seen[fmt.Sprint(g, "/", n)] = true
	}
	if len(seen) != 16000 {
		t.Errorf("%d distinct lines", len(seen))
	}
}

func TestListFiltersAndLimit(t *testing.T) {
	s := New(t.TempDir())
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type spec struct{ lease, slug, state string }
	specs := []spec{
		{"cbx_aaaaaaaaaaaa", "blue-crab", StateSucceeded},
		{"cbx_aaaaaaaaaaaa", "blue-crab", StateFailed},
		{"cbx_bbbbbbbbbbbb", "red-crab", StateSucceeded},
		{"cbx_aaaaaaaaaaaa", "blue-crab", StateRunning},
		{"", "", StateInterrupted},
	}
	var ids []string
	for i, sp := range specs {
		s.Now = func() time.Time { return base.Add(time.Duration(i) * time.Minute) }
		r, err := s.Start(Record{LeaseID: sp.lease, Slug: sp.slug})
		if err != nil {
			t.Fatal(err)
		}
		if sp.state != StateRunning {
			r.Finish(sp.state, 0)
		}
		ids = append(ids, r.ID())
	}
	list := func(f Filter) []string {
		recs, err := s.List(f)
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, r := range recs {
			out = append(out, r.ID)
		}
		return out
	}
	for _, tc := range []struct {
		f    Filter
		want []string
	}{
		{Filter{}, []string{ids[4], ids[3], ids[2], ids[1], ids[0]}},
		{Filter{Limit: 2}, []string{ids[4], ids[3]}},
		{Filter{LeaseID: "cbx_aaaaaaaaaaaa"}, []string{ids[3], ids[1], ids[0]}},
		{Filter{LeaseID: "red-crab"}, []string{ids[2]}},
		{Filter{State: StateSucceeded}, []string{ids[2], ids[0]}},
		{Filter{State: StateRunning}, []string{ids[3]}},
		{Filter{LeaseID: "cbx_aaaaaaaaaaaa", State: StateSucceeded, Limit: 1}, []string{ids[0]}},
		{Filter{LeaseID: "cbx_cccccccccccc"}, []string{}},
	} {
		if got := list(tc.f); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("List(%+v) = %v, want %v", tc.f, got, tc.want)
		}
	}
}

func TestScanSkipsBrokenRecords(t *testing.T) {
	s := New(t.TempDir())
	good, _ := s.Start(Record{})
	good.Finish(StateSucceeded, 0)
	runs := s.RunsDir()
	write := func(rel, content string) {
		p := filepath.Join(runs, rel)
		os.MkdirAll(filepath.Dir(p), 0o700)
		os.WriteFile(p, []byte(content), 0o600)
	}
	write("run_000000000001/run.json", `{"id":"run_000000000001","state":"runn`) // half written
	write("run_000000000002/run.json", "\x00\x01garbage")
	write("run_000000000003/run.json", `{"id":"run_999999999999","state":"succeeded"}`)
	write("run_000000000004/run.json", `{"id":"run_000000000004","state":"exploded"}`)
	os.MkdirAll(filepath.Join(runs, "run_000000000005"), 0o700) // no run.json
	write("not-a-run/run.json", "{}")
	write(".tmp-run_000000000006-123/run.json", "{}")
	write("run_000000000007", "a file")

	recs, skipped, err := s.Scan(Filter{})
	if err != nil || skipped != 5 || len(recs) != 1 || recs[0].ID != good.ID() {
		t.Errorf("Scan = %d records, %d skipped, %v", len(recs), skipped, err)
	}
	if _, err := s.Get("run_000000000002"); err == nil || exitcode.Code(err) != 1 {
		t.Errorf("Get(garbage) = %v", err)
	}
}

func TestEmptyOrMissingStore(t *testing.T) {
	for _, dir := range []string{"", filepath.Join(t.TempDir(), "nothing")} {
		s := New(dir)
		if recs, err := s.List(Filter{}); err != nil || recs == nil || len(recs) != 0 {
			t.Errorf("List(%q) = %v, %v", dir, recs, err)
		}
		if _, err := s.Get("run_0123456789ab"); exitcode.Code(err) != exitcode.NotFound {
			t.Errorf("Get(%q) = %v", dir, err)
		}
	}
	if _, err := New("").Start(Record{}); err == nil {
		t.Error("Start without a state dir succeeded")
	}
}

func TestIDErrors(t *testing.T) {
	s := New(t.TempDir())
	for _, id := range []string{"", "run_", "run_XYZ", "cbx_0123456789ab", "run_0123456789ab/../x", "../run_0123456789ab"} {
		_, err := s.Get(id)
		if exitcode.Code(err) != exitcode.Usage || !errors.Is(err, ErrInvalidID) {
			t.Errorf("Get(%q) = %v (exit %d)", id, err, exitcode.Code(err))
		}
		if _, _, err := s.ReadLog(id, 0); exitcode.Code(err) != exitcode.Usage {
			t.Errorf("ReadLog(%q) = %v", id, err)
		}
		if _, err := s.Start(Record{ID: id}); id != "" && exitcode.Code(err) != exitcode.Usage {
			t.Errorf("Start(%q) = %v", id, err)
		}
	}
	_, err := s.Get("run_0123456789ab")
	if exitcode.Code(err) != exitcode.NotFound || !errors.Is(err, ErrNotFound) || err.Error() != "run run_0123456789ab not found" {
		t.Errorf("Get(missing) = %v", err)
	}
	if _, _, err := s.ReadLog("run_0123456789ab", 0); exitcode.Code(err) != exitcode.NotFound {
		t.Errorf("ReadLog(missing) = %v", err)
	}
}

func TestStartRejectsDuplicateID(t *testing.T) {
	s := New(t.TempDir())
	r, err := s.Start(Record{ID: "run_0123456789ab"})
	if err != nil || r.ID() != "run_0123456789ab" {
		t.Fatal(r, err)
	}
	fmt.Fprintln(r.Log(), "first")
	if _, err := s.Start(Record{ID: "run_0123456789ab"}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("duplicate Start: %v", err)
	}
	if log, _, _ := s.ReadLog(r.ID(), 0); log != "first\n" {
		t.Errorf("first run's log clobbered: %q", log)
	}
	entries, _ := os.ReadDir(s.RunsDir())
	if len(entries) != 1 {
		t.Errorf("leftovers in runs dir: %v", entries)
	}
}
