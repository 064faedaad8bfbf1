package fanout

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/provider"
	"github.com/crabbox-dev/crabbox/internal/results"
	"github.com/crabbox-dev/crabbox/internal/runner"
	"github.com/crabbox-dev/crabbox/internal/runs"
)

// behaviour is what a fake shard does: its exit (-1: fail to get a lease,
// exit 5), whether it waits to be cancelled, its JUnit tests.
type behaviour struct {
	exit  int
	block bool
	tests int
}

type fake struct {
	t     *testing.T
	store *runs.Store
	by    map[int]behaviour
	mu    sync.Mutex
	ran   []int
	env   map[int]*runs.Shard
}

// run stands in for runner.Run: it records a child run as the runner
// would (its ID, shard, results), writes two lines, and ends as told.
func (f *fake) run(ctx context.Context, d runner.Deps, s runner.Spec) (runner.Outcome, error) {
	i := s.Shard.Index
	f.mu.Lock()
	f.ran = append(f.ran, i)
	f.env[i] = s.Shard
	f.mu.Unlock()
	b := f.by[i]
	rec, err := f.store.Start(runs.Record{ID: s.RunID, Shard: s.Shard, Command: s.Argv})
	if err != nil {
		f.t.Fatal(err)
	}
	fmt.Fprintf(d.Notes, "run %s\n", s.RunID)
	out := runner.Outcome{RunID: s.RunID, Timing: map[string]any{"leaseMs": int64(1000 * i), "syncMs": int64(10), "commandMs": int64(500)}, Total: time.Duration(i) * time.Second}
	if b.exit == -1 {
		out.Exit, out.State, out.FailedStep = exitcode.NotFound, runs.StateFailed, "lease"
		rec.Finish(out.State, out.Exit)
		return out, exitcode.Errorf(exitcode.NotFound, "shard %d: creating the workspace failed", i)
	}
	out.Lease = &provider.Lease{ID: fmt.Sprintf("cbx_00000000000%d", i)}
	out.Released = true
	fmt.Fprintf(s.Stdout, "out one from %d\nout two ", i)
	fmt.Fprintf(s.Stdout, "from %d\n", i)
	if b.block {
		<-ctx.Done()
		out.Exit, out.State, out.FailedStep = exitcode.Interrupted, runs.StateInterrupted, "command"
		rec.Finish(out.State, out.Exit)
		return out, context.Canceled
	}
	if b.tests > 0 {
		sum := results.Summary{Tests: b.tests, Failures: min(b.exit, 1), Files: []string{"junit.xml"}}
		rec.Update(func(r *runs.Record) { r.Results = &sum })
	}
	out.Exit, out.State = b.exit, runs.StateSucceeded
	if b.exit != 0 {
		out.State, out.FailedStep = runs.StateFailed, "command"
	}
	rec.Finish(out.State, out.Exit)
	if b.exit != 0 {
		return out, exitcode.Silent(b.exit)
	}
	return out, nil
}

// fakeRun is what runFake returns: the result, the fake, the two streams.
type fakeRun struct {
	f           *fake
	out, errOut string
}

func runFake(t *testing.T, ctx context.Context, by map[int]behaviour, n int, mut func(*Options)) (Result, fakeRun, error) {
	t.Helper()
	f := &fake{t: t, store: runs.New(t.TempDir()), by: by, env: map[int]*runs.Shard{}}
	var out, errOut bytes.Buffer
	o := Options{Store: f.store, Out: &out, ErrOut: &errOut, Run: f.run, Command: []string{"go", "test"}, RepoRoot: "/repo",
		Deps: func(int, io.Writer) (runner.Deps, func(), error) { return runner.Deps{}, func() {}, nil }}
	for i := 1; i <= n; i++ {
		o.Specs = append(o.Specs, runner.Spec{Argv: []string{"go", "test", fmt.Sprint(i)}, Shard: &runs.Shard{Index: i, Total: n, Items: []string{fmt.Sprint(i)}}})
	}
	if mut != nil {
		mut(&o)
	}
	res, err := Run(ctx, o)
	return res, fakeRun{f: f, out: out.String(), errOut: errOut.String()}, err
}

func TestVerdict(t *testing.T) {
	for _, tc := range []struct {
		name     string
		by       map[int]behaviour
		exit     int
		failing  int
		state    string
		wantLine string
	}{
		{"all pass", map[int]behaviour{}, 0, 0, runs.StateSucceeded, "succeeded=4 exit=0"},
		{"lowest failing shard", map[int]behaviour{2: {exit: 3}, 3: {exit: 2}}, 3, 2, runs.StateFailed, "failing=shard 2/4 (command"},
		{"acquisition failure of one shard", map[int]behaviour{3: {exit: -1}}, exitcode.NotFound, 3, runs.StateFailed, "failing=shard 3/4 (lease"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, fr, err := runFake(t, context.Background(), tc.by, 4, nil)
			f, errOut := fr.f, fr.errOut
			if res.Exit != tc.exit || exitcode.Code(err) != tc.exit || res.Failing != tc.failing || res.State != tc.state {
				t.Fatalf("exit %d (err %v) failing %d state %s; want %d %d %s\n%s", res.Exit, err, res.Failing, res.State, tc.exit, tc.failing, tc.state, errOut)
			}
			if slices.Sort(f.ran); !slices.Equal(f.ran, []int{1, 2, 3, 4}) {
				t.Errorf("shards run %v: every shard must run whatever another's fate", f.ran)
			}
			if !strings.Contains(errOut, tc.wantLine) {
				t.Errorf("summary lacks %q:\n%s", tc.wantLine, errOut)
			}
			parent, err := f.store.Get(res.ParentID)
			if err != nil {
				t.Fatal(err)
			}
			if parent.State != tc.state || parent.ExitCode == nil || *parent.ExitCode != tc.exit || len(parent.Shards) != 4 {
				t.Fatalf("parent record %+v", parent)
			}
			for i, ref := range parent.Shards {
				child, err := f.store.Get(ref.RunID)
				if err != nil || child.Shard == nil || child.Shard.Parent != res.ParentID || child.Shard.Index != i+1 {
					t.Fatalf("shard %d: child %+v, %v", i+1, child, err)
				}
				if ref.State != child.State || ref.LeaseMs != int64(1000*(i+1)) || ref.WallMs != int64(1000*(i+1)) {
					t.Errorf("shard %d ref %+v (child state %s)", i+1, ref, child.State)
				}
			}
		})
	}
}

// --fail-fast stops the shards still running at the first failure; they
// are cancelled, not failing, and the verdict is the failed shard's.
// Without it the same failure waits for the others (positive control: a
// blocked shard is only cancelled by fail-fast).
func TestFailFast(t *testing.T) {
	by := map[int]behaviour{1: {block: true}, 2: {exit: 4}, 3: {block: true}}
	res, fr, err := runFake(t, context.Background(), by, 3, func(o *Options) { o.FailFast = true })
	errOut := fr.errOut
	if res.Exit != 4 || exitcode.Code(err) != 4 || res.Failing != 2 {
		t.Fatalf("exit %d failing %d; want 4, 2\n%s", res.Exit, res.Failing, errOut)
	}
	if !res.Shards[0].Cancelled || !res.Shards[2].Cancelled || res.Shards[1].Cancelled {
		t.Fatalf("cancelled: %v %v %v", res.Shards[0].Cancelled, res.Shards[1].Cancelled, res.Shards[2].Cancelled)
	}
	if !strings.Contains(errOut, "--fail-fast: stopping the other shards") || !strings.Contains(errOut, "cancelled=2") {
		t.Errorf("summary:\n%s", errOut)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res, _, _ = runFake(t, ctx, by, 3, nil)
	if res.Shards[0].Cancelled || res.State != runs.StateInterrupted || res.Exit != exitcode.Interrupted {
		t.Fatalf("without --fail-fast: cancelled %v state %s exit %d; want the blocked shards to wait for the interrupt", res.Shards[0].Cancelled, res.State, res.Exit)
	}
}

// An interrupt stops every shard; the verdict is 130 and the parent is
// recorded as interrupted.
func TestInterrupt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	res, fr, err := runFake(t, ctx, map[int]behaviour{1: {block: true}, 2: {block: true}}, 2, nil)
	f := fr.f
	if res.Exit != exitcode.Interrupted || exitcode.Code(err) != exitcode.Interrupted {
		t.Fatalf("exit %d err %v", res.Exit, err)
	}
	parent, _ := f.store.Get(res.ParentID)
	if parent.State != runs.StateInterrupted {
		t.Fatalf("parent state %s", parent.State)
	}
}

var prefixed = regexp.MustCompile(`^\[(\d)/3\] out (one|two) from (\d)$`)

func TestOutputModes(t *testing.T) {
	for _, mode := range []string{OutputPrefixed, OutputGrouped} {
		t.Run(mode, func(t *testing.T) {
			_, fr, _ := runFake(t, context.Background(), map[int]behaviour{}, 3, func(o *Options) { o.Output = mode })
			out, errOut := fr.out, fr.errOut
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != 6 {
				t.Fatalf("stdout %q", out)
			}
			for i, l := range lines {
				switch mode {
				case OutputPrefixed:
					m := prefixed.FindStringSubmatch(l)
					if m == nil || m[1] != m[3] {
						t.Fatalf("line %q: not one whole line with its shard's prefix", l)
					}
				case OutputGrouped:
					// Each shard's two lines together, unprefixed.
					if i%2 == 1 && !strings.HasPrefix(l, "out two from ") || lines[i-i%2][len("out one from "):] != l[len(l)-1:] {
						t.Fatalf("grouped output not whole per shard: %q", lines)
					}
				}
			}
			if mode == OutputGrouped && strings.Count(errOut, "── shard ") != 3 {
				t.Errorf("grouped headers:\n%s", errOut)
			}
			if !regexp.MustCompile(`(?m)^\[2/3\] run run_`).MatchString(errOut) {
				t.Errorf("notes not prefixed:\n%s", errOut)
			}
		})
	}
}

// The parent record merges the shards' JUnit; its log holds the run's
// output.
func TestMergedResultsAndParentLog(t *testing.T) {
	res, fr, _ := runFake(t, context.Background(), map[int]behaviour{1: {tests: 3}, 2: {tests: 4, exit: 1}, 3: {}}, 3, nil)
	f := fr.f
	parent, err := f.store.Get(res.ParentID)
	if err != nil {
		t.Fatal(err)
	}
	if parent.Results == nil || parent.Results.Tests != 7 || parent.Results.Failures != 1 || len(parent.Results.Files) != 2 {
		t.Fatalf("merged results %+v", parent.Results)
	}
	log, _, _ := f.store.ReadLog(res.ParentID, 0)
	if !strings.Contains(log, "[2/3] out one from 2") || !strings.Contains(log, "sharded run summary run="+res.ParentID) {
		t.Fatalf("parent log:\n%s", log)
	}
	for i := 1; i <= 3; i++ {
		if f.env[i].Parent != res.ParentID {
			t.Errorf("shard %d parent %q", i, f.env[i].Parent)
		}
	}
}
