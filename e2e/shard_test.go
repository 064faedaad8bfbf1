//go:build e2e

package e2e

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// shardTimeout bounds one sharded run (4 workspaces made at once on a
// 2-core machine).
const shardTimeout = 6 * time.Minute

// gotestScript runs go test -v on its arguments and writes junit.xml (one
// <testsuite> per package, named by its import path), so the run's JUnit
// can be counted and merged. The workspace's PATH lacks Go; the host's Go
// and its build cache (forwarded GOCACHE) keep the tiny packages quick.
const gotestScript = `#!/bin/bash
set -o pipefail
/usr/local/go/bin/go test -count=1 -v "$@" 2>&1 | tee test.out
rc=${PIPESTATUS[0]}
awk 'BEGIN { print "<testsuites>" }
/^--- (PASS|FAIL|SKIP): / { t=$4; gsub(/[()s]/, "", t); x=""; if ($2=="FAIL:") { x="<failure message=\"failed\"/>"; f++ } else if ($2=="SKIP:") x="<skipped/>"; c[n++]=sprintf("<testcase name=\"%s\" time=\"%s\">%s</testcase>", $3, t, x); next }
/^(ok|FAIL)[ \t]+[^ \t]+[ \t]+[0-9.]+s/ { tt=$3; sub(/s$/, "", tt); printf "<testsuite name=\"%s\" tests=\"%d\" failures=\"%d\" time=\"%s\">\n", $2, n, f, tt; for (i=0; i<n; i++) print c[i]; print "</testsuite>"; n=0; f=0 }
END { print "</testsuites>" }' test.out > junit.xml
exit $rc
`

// goSuite writes a Go module with pkgs test packages of two tiny tests
// each, and the JUnit wrapper; it returns the number of tests.
func (w *world) goSuite(pkgs int) int {
	w.t.Helper()
	w.write("go.mod", "module example.com/shardme\n\ngo 1.22\n")
	w.write("gotest.sh", gotestScript)
	if err := os.Chmod(filepath.Join(w.repo, "gotest.sh"), 0o755); err != nil {
		w.t.Fatal(err)
	}
	for i := 1; i <= pkgs; i++ {
		p := fmt.Sprintf("p%02d", i)
		w.write(p+"/"+p+"_test.go", fmt.Sprintf("package %s\n\nimport \"testing\"\n\nfunc TestA%d(t *testing.T) {}\n\nfunc TestB%d(t *testing.T) {}\n", p, i, i))
	}
	w.git("add", "-A")
	w.git("-c", "user.email=e2e@example.com", "-c", "user.name=e2e", "commit", "-qm", "suite")
	return 2 * pkgs
}

// goEnv is what the suite's command needs on the workspace.
func goEnv() ([]string, []string) {
	cache, _ := os.UserCacheDir()
	gocache := filepath.Join(cache, "go-build")
	if v := os.Getenv("GOCACHE"); v != "" {
		gocache = v
	}
	return []string{"GOCACHE=" + gocache, "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local"}, []string{"--allow-env", "GOCACHE,GOFLAGS,GOTOOLCHAIN"}
}

// runLong runs crabbox with a longer bound than cmdTimeout.
func (w *world) runLong(extra []string, args ...string) result {
	w.t.Helper()
	return w.start("", extra, args...).wait(shardTimeout)
}

var (
	shardWSRe      = regexp.MustCompile(`(?m)^\[(\d+)/(\d+)\] (?:provisioning provider=coder lease=(cbx_[0-9a-f]{12}) slug=\S+ workspace=(\S+)|reusing released coder workspace admin/(\S+) \(lease=(cbx_[0-9a-f]{12}))`)
	shardSummaryRe = regexp.MustCompile(`(?m)^sharded run summary run=(run_[0-9a-f]{12}) shards=(\d+) .*exit=(\d+)`)
)

// shardWorkspaces are the workspaces a sharded run made or reused, by
// shard index; each is deleted when the test ends.
func (w *world) shardWorkspaces(stderr string) map[int]string {
	w.t.Helper()
	out := map[int]string{}
	for _, m := range shardWSRe.FindAllStringSubmatch(stderr, -1) {
		i, _ := strconv.Atoi(m[1])
		ws := m[4]
		if ws == "" {
			ws = m[5]
		}
		out[i] = ws
		w.t.Cleanup(func() { w.deleteWorkspace(ws) })
	}
	return out
}

// assertNoneRunning checks that no workspace of ws runs (Coder's own
// list) and that this machine holds no claim.
func (w *world) assertNoneRunning(ws map[int]string) {
	w.t.Helper()
	rows := map[string]string{}
	for _, r := range w.coderList() {
		rows[r.Name] = r.Status
	}
	for i, name := range ws {
		if st, ok := rows[name]; ok && st != "stopped" {
			w.t.Errorf("shard %d's workspace %s is %s, want stopped or gone", i, name, st)
		}
	}
	if c := w.claims().Claims; len(c) != 0 {
		w.t.Errorf("claims left: %+v", c)
	}
}

type shardRec struct {
	ID      string `json:"id"`
	State   string `json:"state"`
	Results *struct {
		Tests, Failures int
	} `json:"results"`
	Shards []struct {
		Index     int    `json:"index"`
		RunID     string `json:"runId"`
		State     string `json:"state"`
		ExitCode  *int   `json:"exitCode"`
		WallMs    int64  `json:"wallMs"`
		CommandMs int64  `json:"commandMs"`
	} `json:"shards"`
	Shard *struct {
		Parent string   `json:"parent"`
		Index  int      `json:"index"`
		Items  []string `json:"items"`
	} `json:"shard"`
}

func (w *world) parentRecord(r result) shardRec {
	w.t.Helper()
	m := shardSummaryRe.FindStringSubmatch(r.stderr)
	if m == nil {
		w.t.Fatalf("no sharded run summary:\n%s", r.stderr)
	}
	logs := w.must("logs", m[1], "--json")
	return decodeJSON[struct {
		Run shardRec `json:"run"`
	}](w.t, logs.stdout).Run
}

// The acceptance of issue 12 on fresh leases: a Go suite of 9 packages,
// split by `go list ./...` over 4 shards; one verdict, merged results
// that count what one workspace runs, 4 child records, every workspace
// stopped and no claim left. Then one failing package: the exit code and
// the summary name its shard, results --failed-only shows the test; the
// second run is balanced by the first one's timings; --dry-run leases
// nothing.
func TestShardGoSuite(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	tests := w.goSuite(9)
	env, allow := goEnv()
	runArgs := append([]string{"run", "--junit", "junit.xml"}, allow...)

	// One workspace: the count to match.
	single := w.runLong(env, append(runArgs, "--", "./gotest.sh", "./...")...)
	wantCode(t, single, 0, "single-workspace run")
	singleID := runID(t, single)
	singleRes := decodeJSON[struct{ Tests int }](t, w.must("results", singleID, "--json").stdout)
	if singleRes.Tests != tests {
		t.Fatalf("single run counted %d tests, want %d", singleRes.Tests, tests)
	}

	shardArgs := append(append([]string(nil), runArgs...), "--shards", "4", "--split-items-from", "go list ./...", "--", "./gotest.sh")
	r := w.runLong(env, shardArgs...)
	ws := w.shardWorkspaces(r.stderr)
	wantCode(t, r, 0, "sharded run")
	if len(ws) != 4 {
		t.Fatalf("workspaces by shard %v, want 4", ws)
	}
	for i := 1; i <= 4; i++ {
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^shard %d/4 run=run_\w+ lease=cbx_\w+ state=succeeded exit=0 timing lease=\S+ sync=\S+ command=\S+ total=\S+$`, i)).MatchString(r.stderr) {
			t.Errorf("no timing line for shard %d:\n%s", i, r.stderr)
		}
	}
	if !regexp.MustCompile(`(?m)^\[[1-4]/4\] ok  \texample.com/shardme/p0\d`).MatchString(r.stdout) {
		t.Errorf("stdout lines not prefixed by shard:\n%s", r.stdout)
	}
	parent := w.parentRecord(r)
	if parent.State != "succeeded" || len(parent.Shards) != 4 || parent.Results == nil || parent.Results.Tests != singleRes.Tests {
		t.Fatalf("parent record %+v (results %+v), want 4 shards and %d tests", parent, parent.Results, singleRes.Tests)
	}
	var items []string
	for _, s := range parent.Shards {
		child := decodeJSON[struct {
			Run shardRec `json:"run"`
		}](t, w.must("logs", s.RunID, "--json").stdout).Run
		if child.Shard == nil || child.Shard.Parent != parent.ID || child.Shard.Index != s.Index || child.State != "succeeded" {
			t.Errorf("child record %+v", child)
			continue
		}
		items = append(items, child.Shard.Items...)
	}
	if slices.Sort(items); len(items) != 9 || slices.Compact(items) == nil || len(slices.Compact(items)) != 9 {
		t.Errorf("items over the shards %q, want the 9 packages once each", items)
	}
	w.assertNoneRunning(ws)
	if hist := w.must("history", "--limit", "3").stdout; !strings.Contains(hist, parent.ID) || !strings.Contains(hist, "shards=4") {
		t.Errorf("history does not show the parent with its shards:\n%s", hist)
	}
	if lg := w.must("logs", parent.ID, "--shard", "2"); !strings.Contains(lg.stdout, "example.com/shardme/") || strings.Contains(lg.stdout, "[1/4]") {
		t.Errorf("logs --shard 2:\n%s", lg.stdout)
	}

	// --dry-run leases nothing; the plan now rests on the first run's
	// timings. The lab is shared with the parallel tests, so Coder's whole
	// list may change meanwhile (a CI run saw 4 workspaces, then 5): what
	// must not change is this world's workspaces (the released ones a
	// fresh lease would reuse first) and its claims (written before
	// anything is made).
	mine := func() map[string]string {
		rows := map[string]string{}
		for _, r := range w.coderList() {
			for _, name := range ws {
				if r.Name == name {
					rows[name] = r.ID + " " + r.Status + " " + r.LastUsedAt
				}
			}
		}
		return rows
	}
	before := mine()
	dry := w.must(append(append([]string{}, shardArgs[:len(shardArgs)-2]...), "--dry-run", "--", "./gotest.sh")...)
	if !strings.Contains(dry.stdout, "plan shards=4 items=9 basis=timings") || strings.Count(dry.stdout, "\nshard ") != 4 {
		t.Errorf("dry run plan:\n%s", dry.stdout)
	}
	if after := mine(); len(before) != 4 || !maps.Equal(after, before) {
		t.Errorf("this world's workspaces before --dry-run %v, after %v", before, after)
	}
	if c := w.claims().Claims; len(c) != 0 {
		t.Errorf("--dry-run left claims: %+v", c)
	}
	for _, word := range []string{"provisioning", "reusing released", "starting"} {
		if strings.Contains(dry.stderr, word) {
			t.Errorf("--dry-run leased (%q):\n%s", word, dry.stderr)
		}
	}

	// One failing package.
	w.write("p05/fail_test.go", "package p05\n\nimport \"testing\"\n\nfunc TestBroken(t *testing.T) { t.Fatal(\"broken on purpose\") }\n")
	r = w.runLong(env, shardArgs...)
	for i, name := range w.shardWorkspaces(r.stderr) {
		ws[i+10] = name
	}
	wantCode(t, r, 1, "sharded run with a failing package")
	m := regexp.MustCompile(`failing=shard (\d)/4 \(command, run (run_\w+)`).FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("the summary does not name the failing shard:\n%s", r.stderr)
	}
	parent = w.parentRecord(r)
	idx, _ := strconv.Atoi(m[1])
	if parent.Shards[idx-1].RunID != m[2] || parent.Shards[idx-1].State != "failed" {
		t.Errorf("failing shard %d in the record: %+v", idx, parent.Shards[idx-1])
	}
	failed := w.must("results", parent.ID, "--failed-only")
	if !strings.Contains(failed.stdout, "failed: example.com/shardme/p05 TestBroken") {
		t.Errorf("results --failed-only:\n%s", failed.stdout)
	}
	if parent.Results == nil || parent.Results.Tests != tests+1 || parent.Results.Failures != 1 {
		t.Errorf("merged results %+v, want %d tests and 1 failure", parent.Results, tests+1)
	}
	w.assertNoneRunning(ws)
}

// shardLeases are the lease IDs a sharded run's stderr names.
var shardLeaseRe = regexp.MustCompile(`(?m)^shard (\d)/4 run=(run_\w+) lease=(cbx_\w+|-) state=(\w+) exit=(\d+)`)

type shardLine struct {
	run, lease, state string
	exit              int
}

func shardLines(t *testing.T, stderr string) map[int]shardLine {
	t.Helper()
	out := map[int]shardLine{}
	for _, m := range shardLeaseRe.FindAllStringSubmatch(stderr, -1) {
		i, _ := strconv.Atoi(m[1])
		e, _ := strconv.Atoi(m[5])
		out[i] = shardLine{run: m[2], lease: m[3], state: m[4], exit: e}
	}
	if len(out) != 4 {
		t.Fatalf("timing lines for %d shards, want 4:\n%s", len(out), stderr)
	}
	return out
}

// cleanupAll expires every claim and runs cleanup (what a user does after
// a crash), then checks nothing of ws runs.
func (w *world) cleanupAll(ws map[int]string) {
	w.t.Helper()
	for _, c := range w.claims().Claims {
		w.expireClaim(c.LeaseID)
	}
	w.must("cleanup")
	w.assertNoneRunning(ws)
}

// The fault and kill cases of issue 12 item 4, on fresh leases: one
// shard's coder create fails, one shard's tunnel drops mid-command, an
// interrupt, and a SIGKILL of crabbox. The other shards' results are
// kept, the failure is named, and nothing runs afterwards (after cleanup
// for the kill).
func TestShardFaults(t *testing.T) {
	t.Parallel()
	t.Run("create-fails", func(t *testing.T) {
		w := newWorld(t)
		f := newFaults(t)
		f.set("create 3 fail")
		r := w.runLong(nil, f.args("run", "--shards", "4", "--", "sh", "-c", `echo "hello from $CRABBOX_SHARD_INDEX/$CRABBOX_SHARD_TOTAL"`)...)
		ws := w.shardWorkspaces(r.stderr)
		lines := shardLines(t, r.stderr)
		failed := 0
		for i, l := range lines {
			switch l.state {
			case "succeeded":
				if !strings.Contains(r.stdout, fmt.Sprintf("[%d/4] hello from %d/4", i, i)) {
					t.Errorf("shard %d's output missing:\n%s", i, r.stdout)
				}
			case "failed":
				failed = i
				if !strings.Contains(r.stderr, fmt.Sprintf("failing=shard %d/4 (lease,", i)) {
					t.Errorf("the summary does not name shard %d's lease failure:\n%s", i, r.stderr)
				}
				if r.code != l.exit || r.code == 0 {
					t.Errorf("exit %d, want the failing shard's %d", r.code, l.exit)
				}
			}
		}
		if failed == 0 || f.count("create", "fail") != 1 {
			t.Fatalf("want exactly one shard failed by the injected create failure; lines %+v, faults %v", lines, f.injected())
		}
		w.cleanupAll(ws)
	})

	t.Run("tunnel-drops-on-shard-2", func(t *testing.T) {
		w := newWorld(t)
		f := newFaults(t)
		dir := t.TempDir()
		drop := filepath.Join(dir, "drop")
		f.set("ssh * drop-on " + drop)
		// Shard 2 waits until the others' commands ran, then drops its
		// tunnel (the wrapper kills every proxy open when the file
		// appears; the others are done by then).
		script := fmt.Sprintf(`if [ "$CRABBOX_SHARD_INDEX" = 2 ]; then for i in $(seq 600); do [ "$(ls %[1]s/done.* 2>/dev/null | wc -l)" -ge 3 ] && break; sleep 0.2; done; sleep 4; touch %[2]s; sleep 90; else touch %[1]s/done.$CRABBOX_SHARD_INDEX; echo fine; fi`, dir, drop)
		r := w.runLong(nil, f.args("run", "--shards", "4", "--", script)...)
		ws := w.shardWorkspaces(r.stderr)
		lines := shardLines(t, r.stderr)
		wantCode(t, r, 7, "a dropped tunnel on shard 2")
		for i, l := range lines {
			want := "succeeded"
			if i == 2 {
				want = "failed"
			}
			if l.state != want {
				t.Errorf("shard %d %s, want %s", i, l.state, want)
			}
		}
		wantStderr(t, r, "failing=shard 2/4 (command,")
		w.assertNoneRunning(ws)
		if n := procCmdlinesContaining("sleep 90"); n != 0 {
			t.Errorf("%d processes of shard 2's command still run", n)
		}
		w.cleanupAll(ws)
	})

	t.Run("interrupt", func(t *testing.T) {
		w := newWorld(t)
		p := w.startFourSleeping()
		p.cmd.Process.Signal(os.Interrupt)
		r := p.wait(2 * time.Minute)
		ws := w.shardWorkspaces(r.stderr)
		wantCode(t, r, 130, "interrupted sharded run")
		if len(ws) != 4 {
			t.Fatalf("workspaces %v", ws)
		}
		// No cleanup: the interrupt released every fresh lease.
		w.assertNoneRunning(ws)
	})

	t.Run("sigkill", func(t *testing.T) {
		w := newWorld(t)
		p := w.startFourSleeping()
		r := p.kill()
		ws := w.shardWorkspaces(r.stderr)
		if len(ws) != 4 {
			t.Fatalf("workspaces %v", ws)
		}
		if c := w.claims().Claims; len(c) != 4 {
			t.Errorf("claims after the kill: %d, want 4 (the leases stay visible)", len(c))
		}
		hist := w.must("history").stdout
		if !regexp.MustCompile(`(?m)^run_\w+ - - interrupted .* shards=4 `).MatchString(hist) {
			t.Errorf("history does not show the killed sharded run as interrupted:\n%s", hist)
		}
		w.cleanupAll(ws)
	})
}

// warmup --count N --slug NAME makes the pool NAME-1..N at once, and
// run --shards N --pool NAME runs shard i on NAME-i and keeps the pool;
// a count above run.maxShards is refused before anything is leased.
func TestShardPool(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	before := len(w.coderList())
	r := w.crabbox("warmup", "--count", "9", "--slug", "big")
	if r.code != 2 || !strings.Contains(r.stderr, "run.maxShards") {
		t.Fatalf("warmup --count 9: exit %d, want 2 naming run.maxShards:\n%s", r.code, r.stderr)
	}
	if n := len(w.coderList()); n != before {
		t.Errorf("the refused warmup changed Coder's list: %d -> %d workspaces", before, n)
	}

	r = w.runLong(nil, "warmup", "--count", "2", "--slug", "pool")
	ws := map[int]string{}
	for _, m := range regexp.MustCompile(`(?m)^leased cbx_[0-9a-f]{12} slug=pool-(\d) .* workspace=(\S+)$`).FindAllStringSubmatch(r.stdout, -1) {
		i, _ := strconv.Atoi(m[1])
		if ws[i] == "" {
			ws[i] = m[2]
			name := m[2]
			t.Cleanup(func() { w.deleteWorkspace(name) })
		}
	}
	if r.code != 0 || !strings.Contains(r.stdout, "pool pool ready count=2") || len(ws) != 2 {
		t.Fatalf("warmup --count 2: exit %d, workspaces %v\n%s%s", r.code, ws, r.stdout, r.stderr)
	}

	r = w.runLong(nil, "run", "--shards", "2", "--pool", "pool", "--", "sh", "-c", `echo "shard $CRABBOX_SHARD_INDEX on $CRABBOX_SLUG"`)
	if r.code != 0 {
		t.Fatalf("run --pool: exit %d\n%s", r.code, r.stderr)
	}
	for i := 1; i <= 2; i++ {
		if want := fmt.Sprintf("[%d/2] shard %d on pool-%d", i, i, i); !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	// The pool is kept for the next run: both still running.
	rows := map[string]string{}
	for _, row := range w.coderList() {
		rows[row.Name] = row.Status
	}
	for i, name := range ws {
		if rows[name] != "running" {
			t.Errorf("pool lease %d (%s) is %q after the run, want running (kept)", i, name, rows[name])
		}
	}
	w.must("stop", "pool-1")
	w.must("stop", "pool-2")
	w.assertNoneRunning(ws)
}

// startFourSleeping starts a 4-shard run whose commands sleep, and returns
// once all 4 have started.
func (w *world) startFourSleeping() *proc {
	w.t.Helper()
	dir := w.t.TempDir()
	p := w.start("", nil, "run", "--shards", "4", "--", fmt.Sprintf(`touch %s/started.$CRABBOX_SHARD_INDEX; sleep 120`, dir))
	waitUntil(w.t, 3*time.Minute, "all 4 commands to start", p, func() bool {
		m, _ := filepath.Glob(filepath.Join(dir, "started.*"))
		return len(m) == 4
	})
	return p
}
