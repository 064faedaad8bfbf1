package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// sample is one timed measurement.
type sample func() (time.Duration, error)

// row is one line of the table: a timed A/B figure (floor, crabbox,
// target; target 0 is informational) or a count (counts, aim).
type row struct {
	name           string
	floor, crabbox []time.Duration
	target         float64
	counts, aim    map[string]int
}

// interleave runs n pairs of a and b, alternating which goes first.
func interleave(n int, a, b sample) ([]time.Duration, []time.Duration, error) {
	var as, bs []time.Duration
	for i := 0; i < n; i++ {
		first, second := a, b
		if i%2 == 1 { // alternate the order so drift hits both sides
			first, second = b, a
		}
		d1, err := first()
		if err != nil {
			return nil, nil, err
		}
		d2, err := second()
		if err != nil {
			return nil, nil, err
		}
		if i%2 == 1 {
			d1, d2 = d2, d1
		}
		as, bs = append(as, d1), append(bs, d2)
		logf("  pair %d: floor=%s crabbox=%s", i+1, d1.Round(time.Millisecond), d2.Round(time.Millisecond))
	}
	return as, bs, nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spread is "median (min–max)" in milliseconds.
func spread(ds []time.Duration) string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%d", d.Round(time.Millisecond).Milliseconds()) }
	return fmt.Sprintf("%s (%s–%s)", ms(median(ds)), ms(slices.Min(ds)), ms(slices.Max(ds)))
}

// ok reports whether r meets its target (informational rows do).
func (r row) ok() bool {
	if r.counts != nil {
		for k, v := range r.aim {
			if r.counts[k] != v {
				return false
			}
		}
		return true
	}
	return r.target <= 0 || r.ratio() <= r.target
}

func (r row) ratio() float64 { return float64(median(r.crabbox)) / float64(median(r.floor)) }

func formatCounts(m map[string]int) string {
	var parts []string
	for _, k := range counted {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	var extra []string
	for k := range m {
		if !slices.Contains(counted, k) {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	for _, k := range extra {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// printTable prints the table and returns how many targets were missed.
// Times in ms: median (min–max).
func printTable(w io.Writer, rows []row, pairs int) int {
	fmt.Fprintf(w, "\ncrabbox bench (%s, %d pairs, interleaved; ms: median (min–max))\n", time.Now().UTC().Format("2006-01-02"), pairs)
	fmt.Fprintf(w, "%-56s %20s %20s %6s %s\n", "figure", "floor", "crabbox", "ratio", "target")
	missed := 0
	for _, r := range rows {
		verdict := "ok"
		if !r.ok() {
			verdict, missed = "MISSED", missed+1
		}
		switch {
		case r.counts != nil && r.aim != nil:
			fmt.Fprintf(w, "%-56s %s; aim %s: %s\n", r.name, formatCounts(r.counts), formatCounts(r.aim), verdict)
		case r.counts != nil:
			fmt.Fprintf(w, "%-56s %s\n", r.name, formatCounts(r.counts))
		case r.target <= 0:
			fmt.Fprintf(w, "%-56s %20s %20s %6.2f -\n", r.name, spread(r.floor), spread(r.crabbox), r.ratio())
		default:
			fmt.Fprintf(w, "%-56s %20s %20s %6.2f ≤ %.2f %s\n", r.name, spread(r.floor), spread(r.crabbox), r.ratio(), r.target, verdict)
		}
	}
	return missed
}
