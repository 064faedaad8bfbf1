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
// item's JUnit suite time when the shard's report has one, else an even
// share of what is left of the shard's command time once its timed items
// are taken out. Interrupted shards and shards whose command never ran
// teach nothing.
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
	rest := commandSec
	var untimed []string
	for _, it := range c.Shard.Items {
		if sec, ok := lookup(timings, it); ok {
			rest -= sec
			if _, seen := out[it]; !seen {
				out[it] = sec
			}
			continue
		}
		untimed = append(untimed, it)
	}
	if len(untimed) == 0 {
		return
	}
	share := max(rest, 0) / float64(len(untimed))
	for _, it := range untimed {
		if _, seen := out[it]; !seen {
			out[it] = share
		}
	}
}
