package shard

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/results"
	"github.com/crabbox-dev/crabbox/internal/runs"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

func itemsOf(p Plan) [][]string {
	var out [][]string
	for _, s := range p.Shards {
		out = append(out, s.Items)
	}
	return out
}

func TestPack(t *testing.T) {
	sizes := map[string]int64{"a": 100, "b": 10, "c": 60, "d": 50}
	sizeOf := func(it string) (int64, bool) { n, ok := sizes[it]; return n, ok }
	for _, tc := range []struct {
		name      string
		items     []string
		n         int
		w         Weights
		want      [][]string
		basis     string
		estimates []float64
	}{
		{"timings longest first", []string{"a", "b", "c", "d", "e"}, 2,
			Weights{Seconds: map[string]float64{"a": 6, "b": 1, "c": 3, "d": 3, "e": 1}},
			[][]string{{"a", "b"}, {"c", "d", "e"}}, BasisTimings, []float64{7, 7}},
		{"untimed items at the mean", []string{"a", "b", "c"}, 2,
			Weights{Seconds: map[string]float64{"a": 4, "b": 2}},
			[][]string{{"a"}, {"b", "c"}}, BasisTimings, []float64{4, 5}},
		{"timing keys: ./ and python modules", []string{"./pkg/x", "tests/test_y.py", "z"}, 2,
			Weights{Seconds: map[string]float64{"pkg/x": 1, "tests.test_y": 9, "z": 1}},
			[][]string{{"tests/test_y.py"}, {"./pkg/x", "z"}}, BasisTimings, []float64{9, 2}},
		{"sizes without timings", []string{"a", "b", "c", "d"}, 2, Weights{Size: sizeOf},
			[][]string{{"a", "b"}, {"c", "d"}}, BasisSize, []float64{110, 110}},
		{"count when sizes are mostly unknown", []string{"a", "x", "y", "z", "w"}, 2, Weights{Size: sizeOf},
			[][]string{{"a", "x", "y"}, {"z", "w"}}, BasisCount, []float64{3, 2}},
		{"fewer items than shards", []string{"a", "b"}, 4, Weights{},
			[][]string{{"a"}, {"b"}}, BasisCount, []float64{1, 1}},
		{"duplicates kept once", []string{"a", "a", "b"}, 2, Weights{},
			[][]string{{"a"}, {"b"}}, BasisCount, []float64{1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Pack(tc.items, tc.n, tc.w)
			if got := itemsOf(p); !slices.EqualFunc(got, tc.want, slices.Equal) {
				t.Fatalf("shards %q, want %q", got, tc.want)
			}
			if p.Basis != tc.basis {
				t.Errorf("basis %s, want %s", p.Basis, tc.basis)
			}
			for i, s := range p.Shards {
				if s.Index != i+1 || s.Estimate != tc.estimates[i] {
					t.Errorf("shard %d: index %d estimate %v, want %v", i, s.Index, s.Estimate, tc.estimates[i])
				}
			}
		})
	}
}

// Longest-first beats a count split on skewed items (the reason for
// timings), and Count deals contiguous runs.
func TestCountVersusPack(t *testing.T) {
	items := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	sec := map[string]float64{"a": 8, "b": 8, "c": 1, "d": 1, "e": 1, "f": 1, "g": 1, "h": 1}
	worst := func(p Plan) float64 {
		m := 0.0
		for _, s := range p.Shards {
			var sum float64
			for _, it := range s.Items {
				sum += sec[it]
			}
			m = max(m, sum)
		}
		return m
	}
	c := Count(items, 2)
	if got := itemsOf(c); !slices.EqualFunc(got, [][]string{{"a", "b", "c", "d"}, {"e", "f", "g", "h"}}, slices.Equal) {
		t.Fatalf("count shards %q", got)
	}
	if w := worst(c); w != 18 {
		t.Fatalf("count split's longest shard %v, want 18", w)
	}
	if w := worst(Pack(items, 2, Weights{Seconds: sec})); w != 11 {
		t.Fatalf("timed split's longest shard %v, want 11", w)
	}
}

func TestArgv(t *testing.T) {
	items := []string{"./a", "b c"}
	for _, tc := range []struct {
		name  string
		argv  []string
		quote func(string) string
		want  []string
	}{
		{"trailing", []string{"go", "test"}, nil, []string{"go", "test", "./a", "b c"}},
		{"placeholder word", []string{"go", "test", "{items}", "-count=1"}, nil, []string{"go", "test", "./a", "b c", "-count=1"}},
		{"placeholder in a word", []string{"pytest {items} -q"}, sshx.Quote, []string{"pytest './a' 'b c' -q"}},
		{"shell trailing", []string{"make test"}, sshx.Quote, []string{"make test", "'./a'", "'b c'"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Argv(tc.argv, items, tc.quote); !slices.Equal(got, tc.want) {
				t.Fatalf("Argv = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestGlob(t *testing.T) {
	files := []string{"README.md", "tests/test_a.py", "tests/unit/test_b.py", "tests/unit/helper.py", "src/test_c.py"}
	for _, tc := range []struct {
		pattern string
		want    []string
		code    int
	}{
		{"tests/**/test_*.py", []string{"tests/test_a.py", "tests/unit/test_b.py"}, 0},
		{"./tests/*.py", []string{"tests/test_a.py"}, 0},
		{"**/test_*.py", []string{"tests/test_a.py", "tests/unit/test_b.py", "src/test_c.py"}, 0},
		{"*.go", nil, exitcode.Usage},
		{"tests/[", nil, exitcode.Usage},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			got, err := Glob(files, tc.pattern)
			if exitcode.Code(err) != tc.code || !slices.Equal(got, tc.want) {
				t.Fatalf("Glob = %q, %v; want %q (exit %d)", got, err, tc.want, tc.code)
			}
		})
	}
}

func TestFromCommand(t *testing.T) {
	f := execx.NewFake().On("bash -c go list ./...", execx.Reply{Stdout: "ex.com/m/a\r\n\n  ex.com/m/b  \n"})
	got, err := FromCommand(context.Background(), f, "/repo", "go list ./...")
	if err != nil || !slices.Equal(got, []string{"ex.com/m/a", "ex.com/m/b"}) {
		t.Fatalf("items %q, %v", got, err)
	}
	if c := f.Calls()[0]; c.Dir != "/repo" {
		t.Errorf("ran in %q, want the repo root", c.Dir)
	}
	for _, r := range []execx.Reply{{ExitCode: 1, Stderr: "boom"}, {Stdout: "\n \n"}} {
		f := execx.NewFake().On("bash -c", r)
		if _, err := FromCommand(context.Background(), f, "/repo", "x"); exitcode.Code(err) != exitcode.Usage {
			t.Errorf("reply %+v: err %v, want a usage error", r, err)
		}
	}
}

func TestSecondsFromHistory(t *testing.T) {
	cmd := []string{"go", "test"}
	child := map[string]*runs.Record{
		"run_new1": {Shard: &runs.Shard{Items: []string{"a", "b", "c"}},
			Results: &results.Summary{Timings: map[string]float64{"a": 2}}},
		"run_new2": {Shard: &runs.Shard{Items: []string{"d"}}},
		"run_old1": {Shard: &runs.Shard{Items: []string{"a", "e"}}},
		"run_int":  {Shard: &runs.Shard{Items: []string{"f"}}},
	}
	get := func(id string) (*runs.Record, error) {
		if r, ok := child[id]; ok {
			return r, nil
		}
		return nil, errors.New("no such run")
	}
	parents := []runs.Record{
		{ID: "other", RepoRoot: "/repo", Command: []string{"go", "vet"}, Shards: []runs.ShardRef{{RunID: "run_old1", State: "succeeded", CommandMs: 99000}}},
		{ID: "new", RepoRoot: "/repo", Command: cmd, Shards: []runs.ShardRef{
			{RunID: "run_new1", State: "succeeded", CommandMs: 11000},
			{RunID: "run_new2", State: "failed", CommandMs: 3000},
			{RunID: "run_int", State: "interrupted", CommandMs: 5000},
			{RunID: "run_gone", State: "succeeded", CommandMs: 5000},
		}},
		{ID: "old", RepoRoot: "/repo", Command: cmd, Shards: []runs.ShardRef{{RunID: "run_old1", State: "succeeded", CommandMs: 20000}}},
		{ID: "elsewhere", RepoRoot: "/other", Command: cmd, Shards: []runs.ShardRef{{RunID: "run_int", State: "succeeded", CommandMs: 1000}}},
	}
	got := Seconds(parents, get, "/repo", cmd)
	// The newest shard of a, b, c took 11 s, 2 of them a's own (JUnit):
	// the other 9 are shared, so a 2+3, b and c 3; d: its shard's time;
	// e: half of the old run's 20 s (a is known from the newer run).
	want := map[string]float64{"a": 5, "b": 3, "c": 3, "d": 3, "e": 10}
	if !maps.Equal(got, want) {
		t.Fatalf("Seconds = %v, want %v", got, want)
	}
}

func TestDescribe(t *testing.T) {
	p := Pack([]string{"a", "b c", "d"}, 2, Weights{Seconds: map[string]float64{"a": 3}})
	got := strings.Join(Describe(p), "\n")
	want := "plan shards=2 items=3 basis=timings (timed 1 of 3; the others at the mean)\n" +
		"shard 1/2 items=2 est=6.0s: a d\n" +
		"shard 2/2 items=1 est=3.0s: 'b c'"
	if got != want {
		t.Fatalf("Describe:\n%s\nwant:\n%s", got, want)
	}
}
