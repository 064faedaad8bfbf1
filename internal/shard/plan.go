// Package shard plans a sharded run (run --shards): the items to split
// (from a local command's output or a glob over the sync manifest), their
// weights (timings of earlier runs of the same command, else file sizes,
// else one each), the longest-first greedy packing into shards, and each
// shard's command. It runs nothing remote and never prints.
package shard

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// Bases of an estimate, best first.
const (
	BasisTimings = "timings" // earlier runs' JUnit and shard wall times
	BasisSize    = "size"    // file sizes in the sync manifest
	BasisCount   = "count"   // one unit per item
)

// Shard is one shard of a plan.
type Shard struct {
	Index int      // 1-based
	Items []string // in the order the source gave them
	// Estimate is the shard's load: seconds with BasisTimings, bytes with
	// BasisSize, items with BasisCount.
	Estimate float64
}

// Plan is how the items are split.
type Plan struct {
	Shards []Shard
	Basis  string
	// Timed is how many items had a timing of their own (BasisTimings);
	// the others were given the timed items' mean.
	Timed int
	Items int
}

// Weights are the inputs of an estimate.
type Weights struct {
	// Seconds are known timings by item (see History.Seconds).
	Seconds map[string]float64
	// Size returns an item's size in bytes (a file, or the files below a
	// directory), false when unknown; nil when no sizes are known.
	Size func(item string) (int64, bool)
}

// Pack splits items into at most n shards, longest first: each item, by
// decreasing weight (ties by source order), goes to the least loaded
// shard (ties to the lowest index). With no weight known (BasisCount) it
// is Count. Fewer items than n give one shard per item. Duplicate items
// are kept once.
func Pack(items []string, n int, w Weights) Plan {
	items = dedupe(items)
	if n > len(items) {
		n = len(items)
	}
	p := Plan{Items: len(items)}
	weights, basis, timed := estimate(items, w)
	p.Basis, p.Timed = basis, timed
	if basis == BasisCount {
		return Count(items, n)
	}
	if n <= 0 {
		return p
	}
	order := make([]int, len(items))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return weights[order[a]] > weights[order[b]] })
	loads := make([]float64, n)
	owner := make([]int, len(items))
	for _, i := range order {
		best := 0
		for s := 1; s < n; s++ {
			if loads[s] < loads[best] {
				best = s
			}
		}
		loads[best] += weights[i]
		owner[i] = best
	}
	p.Shards = make([]Shard, n)
	for s := range p.Shards {
		p.Shards[s] = Shard{Index: s + 1, Estimate: loads[s]}
	}
	for i, it := range items {
		p.Shards[owner[i]].Items = append(p.Shards[owner[i]].Items, it)
	}
	return p
}

// Count splits items into n shards by count alone: n contiguous runs of
// the source's order, the first ones one item longer when it does not
// divide (what a tool's own --shard=i/n does; related items stay
// together).
func Count(items []string, n int) Plan {
	items = dedupe(items)
	if n > len(items) {
		n = len(items)
	}
	p := Plan{Items: len(items), Basis: BasisCount}
	if n <= 0 {
		return p
	}
	p.Shards = make([]Shard, n)
	for s := range p.Shards {
		p.Shards[s].Index = s + 1
	}
	size, extra := len(items)/n, len(items)%n
	next := 0
	for s := range p.Shards {
		k := size
		if s < extra {
			k++
		}
		p.Shards[s].Items = items[next : next+k : next+k]
		p.Shards[s].Estimate = float64(k)
		next += k
	}
	return p
}

// estimate weighs items: by timing when any item has one (the untimed
// ones get the timed items' mean), else by size when every item has one
// (an unknown size counts as the known sizes' mean), else 1 each.
func estimate(items []string, w Weights) ([]float64, string, int) {
	out := make([]float64, len(items))
	var sum float64
	timed := 0
	for i, it := range items {
		if sec, ok := lookup(w.Seconds, it); ok {
			out[i], sum = sec, sum+sec
			timed++
		} else {
			out[i] = math.NaN()
		}
	}
	if timed > 0 {
		mean := sum / float64(timed)
		for i := range out {
			if math.IsNaN(out[i]) {
				out[i] = mean
			}
		}
		return out, BasisTimings, timed
	}
	if w.Size != nil {
		known, total := 0, int64(0)
		for i, it := range items {
			if n, ok := w.Size(it); ok {
				out[i] = float64(n)
				known++
				total += n
			}
		}
		if known*2 > len(items) { // most items are files
			mean := float64(total) / float64(known)
			for i, it := range items {
				if _, ok := w.Size(it); !ok {
					out[i] = mean
				}
			}
			return out, BasisSize, 0
		}
	}
	for i := range out {
		out[i] = 1
	}
	return out, BasisCount, 0
}

// lookup finds an item's timing under its own name or the names a test
// report uses for it: without a leading "./", and a Python file as its
// dotted module (tests/test_a.py is tests.test_a).
func lookup(sec map[string]float64, item string) (float64, bool) {
	if len(sec) == 0 {
		return 0, false
	}
	for _, k := range Keys(item) {
		if v, ok := sec[k]; ok {
			return v, true
		}
	}
	return 0, false
}

// Keys are the names an item's timing may be recorded under, the item
// itself first.
func Keys(item string) []string {
	keys := []string{item}
	add := func(k string) {
		if k != "" && !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	bare := strings.TrimPrefix(item, "./")
	add(bare)
	if m, ok := strings.CutSuffix(bare, ".py"); ok {
		add(strings.ReplaceAll(m, "/", "."))
	}
	return keys
}

func dedupe(items []string) []string {
	seen := make(map[string]bool, len(items))
	out := make([]string, 0, len(items))
	for _, it := range items {
		if !seen[it] {
			seen[it] = true
			out = append(out, it)
		}
	}
	return out
}

// FormatEstimate renders a shard's load for the plan: "12.5s", "3.1 KiB"
// or "4 items".
func FormatEstimate(basis string, v float64) string {
	switch basis {
	case BasisTimings:
		return fmt.Sprintf("%.1fs", v)
	case BasisSize:
		return humanBytes(int64(v))
	}
	n := int(v)
	if n == 1 {
		return "1 item"
	}
	return fmt.Sprintf("%d items", n)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
