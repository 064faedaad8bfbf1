package cli

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/runs"
)

// completionEnv is a test env with two claimed leases and two runs.
func completionEnv(t *testing.T) (*testEnv, []string) {
	t.Helper()
	te := newTestEnv(t)
	state := config.StateDir(config.MapEnv(te.vars))
	cs := claims.New(state)
	for id, slug := range map[string]string{"cbx_aaaaaaaaaaaa": "blue-crab", "cbx_bbbbbbbbbbbb": ""} {
		if _, err := cs.Update(id, func(c *claims.Claim, exists bool) error {
			if err := claims.Bind(c, exists, te.repo, false, time.Now()); err != nil {
				return err
			}
			c.Slug, c.Provider = slug, "coder"
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	store := runs.New(state)
	var ids []string
	for _, argv := range [][]string{{"go", "test", "./..."}, {"make", "lint\tx"}} {
		r, err := store.Start(runs.Record{Command: argv})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Finish(runs.StateSucceeded, 0); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID())
	}
	return te, ids
}

// complete runs cobra's hidden __complete command and returns the
// candidates (without descriptions) and the directive line.
func complete(t *testing.T, te *testEnv, args ...string) ([]string, string) {
	t.Helper()
	code, out, errOut := te.run(t, append([]string{"__complete"}, args...)...)
	if code != 0 {
		t.Fatalf("__complete %q: exit %d\n%s", args, code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var cands []string
	for _, l := range lines[:len(lines)-1] {
		v, _, _ := strings.Cut(l, "\t")
		cands = append(cands, v)
	}
	return cands, lines[len(lines)-1]
}

func TestCompleteLeases(t *testing.T) {
	te, _ := completionEnv(t)
	got := te.f.completeLeases("", "")
	want := []string{
		"cbx_aaaaaaaaaaaa\tslug blue-crab, coder, repo",
		"blue-crab\tlease cbx_aaaaaaaaaaaa",
		"cbx_bbbbbbbbbbbb\tlease, coder, repo",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("completeLeases(\"\") =\n%q\nwant\n%q", got, want)
	}
	if got := te.f.completeLeases("cbx_b", ":"); !reflect.DeepEqual(got, []string{"cbx_bbbbbbbbbbbb:\tlease, coder, repo"}) {
		t.Errorf("completeLeases(cbx_b) = %q", got)
	}
	if got := te.f.completeLeases("zzz", ""); len(got) != 0 {
		t.Errorf("completeLeases(zzz) = %q", got)
	}
}

func TestCompleteRuns(t *testing.T) {
	te, ids := completionEnv(t)
	got := te.f.completeRuns("run_")
	if len(got) != 2 {
		t.Fatalf("completeRuns = %q", got)
	}
	for _, g := range got {
		id, desc, _ := strings.Cut(g, "\t")
		if id != ids[0] && id != ids[1] {
			t.Errorf("unknown run %q", id)
		}
		if !strings.HasPrefix(desc, "succeeded ") || strings.Contains(desc, "\t") {
			t.Errorf("description %q", desc)
		}
	}
	if got := te.f.completeRuns(ids[1]); len(got) != 1 || !strings.HasPrefix(got[0], ids[1]+"\t") {
		t.Errorf("completeRuns(%s) = %q", ids[1], got)
	}
}

// The completions are wired to the commands: through cobra's own
// __complete, as the shell scripts call it.
func TestCompletionWiring(t *testing.T) {
	te, ids := completionEnv(t)
	t.Chdir(t.TempDir()) // cp looks for local names here
	leases := []string{"cbx_aaaaaaaaaaaa", "blue-crab", "cbx_bbbbbbbbbbbb"}
	for _, tt := range []struct {
		args      []string
		want      []string
		directive string
	}{
		{[]string{"ssh", ""}, leases, ":4"},
		{[]string{"ssh", "blue-crab", ""}, nil, ":4"},
		{[]string{"stop", "--id", ""}, leases, ":4"},
		{[]string{"run", "--id", "blu"}, []string{"blue-crab"}, ":4"},
		{[]string{"cp", "--id", "cbx_a"}, []string{"cbx_aaaaaaaaaaaa"}, ":4"},
		{[]string{"tunnel", "--id", "blue"}, []string{"blue-crab"}, ":4"},
		{[]string{"history", "--lease", "cbx_b"}, []string{"cbx_bbbbbbbbbbbb"}, ":4"},
		{[]string{"logs", ids[0]}, []string{ids[0]}, ":4"},
		{[]string{"results", "run_"}, []string{ids[1], ids[0]}, ":4"},
		{[]string{"cp", "blue"}, []string{"blue-crab:"}, ":6"},
		{[]string{"cp", ""}, nil, ":0"},
		{[]string{"cp", "blue-crab:sr"}, nil, ":4"},
		{[]string{"completion", ""}, []string{"bash", "zsh", "fish", "powershell"}, ":4"},
	} {
		got, dir := complete(t, te, tt.args...)
		if tt.args[0] == "results" && len(got) == 2 && got[0] == ids[0] {
			got[0], got[1] = got[1], got[0] // same start second: either order
		}
		if !reflect.DeepEqual(got, tt.want) || dir != tt.directive {
			t.Errorf("complete %q = %q %s; want %q %s", tt.args, got, dir, tt.want, tt.directive)
		}
	}
}

func TestCompletionScripts(t *testing.T) {
	te := newTestEnv(t)
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		code, out, errOut := te.run(t, "completion", sh)
		if code != 0 || !strings.Contains(out, "crabbox") || !strings.Contains(out, "__complete") {
			t.Errorf("completion %s: exit %d, %d bytes\n%s", sh, code, len(out), errOut)
		}
	}
	if code, _, _ := te.run(t, "completion", "tcsh"); code != 2 {
		t.Errorf("completion tcsh: exit %d, want 2", code)
	}
}
