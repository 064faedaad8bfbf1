package main

// Figures of sharded runs (issue 12 item 6), on warm workspaces of the
// bench's lab:
//
//  5. a generated suite of 40 items that only wait (sleep 0.5–6 s,
//     skewed), so the figure measures crabbox's fan-out and balancing and
//     not this machine's cores: `run --shards 4 --pool` (4 warm
//     workspaces) vs `run --shards 1 --id` (1 warm workspace); target
//     wall ratio <= 0.32 (ideal 0.25);
//  6. on the same pool, a split balanced by the earlier runs' timings vs
//     a count-based split (--split-by count); target <= 0.85.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// shardItems is the suite's item count.
const shardItems = 40

// suiteRunner runs each item given, timing it, and writes junit.xml with
// one suite per item (named by its path), as a test runner would.
const suiteRunner = `#!/bin/bash
rc=0
{
echo "<testsuites>"
for t in "$@"; do
	s=$(date +%s.%N)
	bash "$t" || rc=1
	e=$(date +%s.%N)
	printf '<testsuite name="%s" tests="1" failures="0" time="%s"><testcase name="%s" time="%s"/></testsuite>\n' "$t" "$(echo "$e - $s" | bc)" "$t" "$(echo "$e - $s" | bc)"
done
echo "</testsuites>"
} > junit.xml
exit $rc
`

// suiteDurations are the items' sleeps: 0.5 + 5.5·u³ seconds for u drawn
// with a fixed seed (most items short, a few long), to 0.1 s.
func suiteDurations() []float64 {
	r := rand.New(rand.NewPCG(12, 1))
	d := make([]float64, shardItems)
	for i := range d {
		u := r.Float64()
		d[i] = math.Round((0.5+5.5*u*u*u)*10) / 10
	}
	return d
}

// figShard measures figures 5 and 6 (-only shard).
func figShard(b *bench) ([]row, error) {
	repo := filepath.Join(b.tmp, "shard-suite")
	durs := suiteDurations()
	var sum float64
	for i, d := range durs {
		sum += d
		p := filepath.Join(repo, "t", fmt.Sprintf("t%02d.sh", i+1))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, []byte(fmt.Sprintf("sleep %.1f\n", d)), 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(repo, "run.sh"), []byte(suiteRunner), 0o755); err != nil {
		return nil, err
	}
	if err := b.genRepo(repo, 0); err != nil {
		return nil, err
	}
	logf("sharded runs: %d items, %.1f s of sleep in all", shardItems, sum)

	logf("warmup --count 4 --slug bench-pool, and one more lease")
	if out, err := sh(10*time.Minute, repo, b.environ, b.crabbox, "warmup", "--count", "4", "--slug", "bench-pool"); err != nil {
		return nil, fmt.Errorf("warmup --count 4: %v\n%s", err, out)
	}
	for i := 1; i <= 4; i++ {
		defer sh(2*time.Minute, repo, b.environ, b.crabbox, "stop", "--coder-delete-on-release", fmt.Sprintf("bench-pool-%d", i))
	}
	out, err := sh(5*time.Minute, repo, b.environ, b.crabbox, "warmup", "--slug", "bench-one")
	if err != nil {
		return nil, fmt.Errorf("warmup: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^leased (cbx_\w+) `).FindStringSubmatch(string(out))
	if m == nil {
		return nil, fmt.Errorf("warmup output: %s", out)
	}
	one := m[1]
	defer sh(2*time.Minute, repo, b.environ, b.crabbox, "stop", "--coder-delete-on-release", one)

	sharded := func(args ...string) func() (time.Duration, error) {
		argv := append([]string{"run", "--split-glob", "t/*.sh", "--junit", "junit.xml"}, args...)
		argv = append(argv, "--", "./run.sh")
		return func() (time.Duration, error) {
			t0 := time.Now()
			out, err := sh(10*time.Minute, repo, b.environ, b.crabbox, argv...)
			if err != nil {
				return 0, fmt.Errorf("crabbox %s: %v\n%s", strings.Join(argv, " "), err, out)
			}
			return time.Since(t0), nil
		}
	}
	single := sharded("--shards", "1", "--id", one)
	four := sharded("--shards", "4", "--pool", "bench-pool")
	byCount := sharded("--shards", "4", "--pool", "bench-pool", "--split-by", "count")
	// First runs (untimed): the syncs, and the timings the balanced split
	// learns from.
	for _, f := range []func() (time.Duration, error){single, four} {
		if _, err := f(); err != nil {
			return nil, err
		}
	}
	logf("figure 5: 4 warm workspaces vs 1")
	f5a, f5b, err := interleave(*pairs, single, four)
	if err != nil {
		return nil, err
	}
	logf("figure 6: timing-balanced vs count-based split")
	f6a, f6b, err := interleave(*pairs, byCount, four)
	if err != nil {
		return nil, err
	}
	return []row{
		{name: fmt.Sprintf("5 --shards 4 on 4 warm workspaces vs 1 (%d items, %.0f s of sleep)", shardItems, sum), floor: f5a, crabbox: f5b, target: 0.32},
		{name: "6 timing-balanced vs count-based split (4 shards)", floor: f6a, crabbox: f6b, target: 0.85},
	}, nil
}
