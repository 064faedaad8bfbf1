package runner

import (
	"context"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/runs"
)

// A shard's run gets its index, total and items file, and its record says
// which sharded run it belongs to; a plain run gets none of the variables.
func TestRunShardEnvironmentAndRecord(t *testing.T) {
	script := `echo "i=${CRABBOX_SHARD_INDEX-unset} n=${CRABBOX_SHARD_TOTAL-unset}"; if [ -n "$CRABBOX_SHARD_ITEMS" ]; then cat "$CRABBOX_SHARD_ITEMS"; else echo no-items; fi`
	for _, tc := range []struct {
		name  string
		shard *runs.Shard
		want  string
		env   map[string]string // forwarded: listed in the notes
	}{
		{"split", &runs.Shard{Parent: "run_aaaaaaaaaaaa", Index: 2, Total: 3, Items: []string{"./a", "./b c"}}, "i=2 n=3\n./a\n./b c\n", nil},
		{"split forwarding", &runs.Shard{Parent: "run_aaaaaaaaaaaa", Index: 2, Total: 3, Items: []string{"./a"}}, "i=2 n=3\n./a\n", map[string]string{"FOO": "bar"}},
		{"native", &runs.Shard{Parent: "run_aaaaaaaaaaaa", Index: 1, Total: 4}, "i=1 n=4\nno-items\n", nil},
		{"plain", nil, "i=unset n=unset\nno-items\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			s := h.spec("sh", "-c", script)
			s.Shard, s.Env = tc.shard, tc.env
			out, err := Run(context.Background(), h.deps, s)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, h.notes)
			}
			if h.out.String() != tc.want {
				t.Fatalf("stdout %q, want %q", h.out, tc.want)
			}
			rec, err := h.store.Get(out.RunID)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.shard == nil && rec.Shard != nil:
				t.Fatalf("a plain run's record has a shard: %+v", rec.Shard)
			case tc.shard != nil && (rec.Shard == nil || rec.Shard.Parent != tc.shard.Parent || rec.Shard.Index != tc.shard.Index || len(rec.Shard.Items) != len(tc.shard.Items)):
				t.Fatalf("record shard %+v, want %+v", rec.Shard, tc.shard)
			}
			if listed := strings.Contains(h.notes.String(), "env forwarded:"); listed != (tc.env != nil) {
				t.Errorf("env forwarded line shown=%t, want %t:\n%s", listed, tc.env != nil, h.notes)
			}
		})
	}
}
