package cli

import (
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/execx"
)

// Sharding flags that contradict each other or the run are usage errors
// before anything runs (no coder call).
func TestShardFlagUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--split-glob", "*.py"}, "add --shards N"},
		{[]string{"--shards", "0"}, "--shards must be 1 or more"},
		{[]string{"--shards", "2", "--split-glob", "a", "--split-items-from", "b"}, "give one"},
		{[]string{"--shards", "2", "--output", "fancy"}, "--output must be prefixed or grouped"},
		{[]string{"--shards", "2", "--split-by", "luck", "--split-glob", "a"}, "--split-by must be"},
		{[]string{"--shards", "2", "--split-by", "count"}, "--split-by weighs split items"},
		{[]string{"--shards", "2", "--pool", "p", "--id", "a,b"}, "--pool and --id"},
		{[]string{"--shards", "3", "--id", "a,b"}, "--id names 2 lease(s) for --shards 3"},
		{[]string{"--shards", "2", "--capture-stdout", "x"}, "--capture-stdout"},
		{[]string{"--shards", "2", "--download", "a=b"}, "--download"},
		{[]string{"--shards", "9", "--no-sync", "--dry-run"}, "above run.maxShards (8)"},
	} {
		te := newTestEnv(t)
		args := append(append([]string{"run", "--provider", "coder"}, tc.args...), "--", "go", "test")
		code, _, errOut := te.run(t, args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
		for _, a := range te.fake.Argvs() {
			if strings.HasPrefix(a, "coder") {
				t.Errorf("%v: called %s", tc.args, a)
			}
		}
	}
}

// --dry-run prints the plan from the local items command and leases
// nothing; run.maxShards is the cap (--force passes it, a lower cap
// refuses).
func TestShardDryRun(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []string
		env   map[string]string
		code  int
		want  string
	}{
		{"plan", []string{"--shards", "2"}, nil, 0, "plan shards=2 items=3 basis=count\nshard 1/2 items=2 est=2 items: ./a ./b\nshard 2/2 items=1 est=1 item: ./c\n"},
		{"forced above the cap", []string{"--shards", "9", "--force"}, nil, 0, "plan shards=3 items=3 basis=count\n"},
		{"lower cap", []string{"--shards", "3"}, map[string]string{"CRABBOX_MAX_SHARDS": "2"}, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newTestEnv(t)
			for k, v := range tc.env {
				te.vars[k] = v
			}
			te.fake.On("bash -c list-items", execx.Reply{Stdout: "./a\n./b\n./c\n"})
			args := append([]string{"run", "--provider", "coder", "--no-sync", "--dry-run", "--split-items-from", "list-items"}, tc.extra...)
			code, out, errOut := te.run(t, append(args, "--", "go", "test")...)
			if tc.code == 2 && !strings.Contains(errOut, "above run.maxShards (2)") {
				t.Errorf("stderr %q does not name the cap", errOut)
			}
			if code != tc.code || !strings.HasPrefix(out, tc.want) {
				t.Fatalf("exit %d stdout %q stderr %q; want %d and %q", code, out, errOut, tc.code, tc.want)
			}
			for _, a := range te.fake.Argvs() {
				if strings.HasPrefix(a, "coder") || strings.HasPrefix(a, "ssh") {
					t.Errorf("--dry-run called %s", a)
				}
			}
		})
	}
}
