package shard

import (
	"slices"

	"github.com/crabbox-dev/crabbox/internal/runs"
)

// MaxHistory is how many earlier sharded runs of a command Seconds reads.
const MaxHistory = 5

// Seconds are item timings learnt from earlier sharded runs of command in
// repoRoot (parents, newest first, as runs.Store.List returns them; child
// reads a shard's record). The newest run that ran an item decides: the
// item's JUnit suite time (0 when the shard's report has none) plus an
// even share of the shard's command time the reports do not account for.
// Interrupted shards and shards whose command never ran teach nothing.
func Seconds(parents []runs.Record, child func(id string) (*runs.Record, error), repoRoot string, command []string) map[string]float64 {
	out := map[string]float64{}
	used := 0
	for _, p := range parents {
		if used >= MaxHistory {
			break
		}
		if !p.IsSharded() || p.RepoRoot != repoRoot || !slices.Equal(p.Command, command) {
			continue
		}
		used++
		for _, ref := range p.Shards {
			if ref.RunID == "" || ref.CommandMs <= 0 || (ref.State != runs.StateSucceeded && ref.State != runs.StateFailed) {
				continue
			}
			c, err := child(ref.RunID)
			if err != nil || c.Shard == nil || len(c.Shard.Items) == 0 {
				continue
			}
			learn(out, c, float64(ref.CommandMs)/1000)
		}
	}
	return out
}

func learn(out map[string]float64, c *runs.Record, commandSec float64) {
	var timings map[string]float64
	if c.Results != nil {
		timings = c.Results.Timings
	}
	items := c.Shard.Items
	own := make([]float64, len(items))
	var sum float64
	for i, it := range items {
		if sec, ok := lookup(timings, it); ok {
			own[i] = sec
			sum += sec
		}
	}
	// What the reports do not account for (building, start-up, untimed
	// items) is shared evenly.
	share := max(commandSec-sum, 0) / float64(len(items))
	for i, it := range items {
		if _, seen := out[it]; !seen {
			out[it] = own[i] + share
		}
	}
}
