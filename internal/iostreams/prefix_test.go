package iostreams

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Lines from concurrent writers come out whole, each with its writer's
// prefix, whatever the write boundaries; a partial line waits for Flush.
func TestLineWriter(t *testing.T) {
	var out bytes.Buffer
	var l Lines
	const writers, lines = 4, 200
	var wg sync.WaitGroup
	ws := make([]*LineWriter, writers)
	for i := range ws {
		ws[i] = l.Writer(&out, fmt.Sprintf("[%d/%d] ", i+1, writers))
		wg.Add(1)
		go func(w *LineWriter, id int) {
			defer wg.Done()
			for n := 0; n < lines; n++ {
				s := fmt.Sprintf("shard %d line %d\n", id, n)
				// Split every line into 1-byte writes.
				for j := range s {
					w.Write([]byte{s[j]})
				}
			}
			w.Write([]byte("tail without newline"))
		}(ws[i], i+1)
	}
	wg.Wait()
	if strings.Contains(out.String(), "tail without newline") {
		t.Fatal("a partial line was written before Flush")
	}
	for _, w := range ws {
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != writers*(lines+1) {
		t.Fatalf("%d lines, want %d", len(got), writers*(lines+1))
	}
	next := map[int]int{}
	for _, line := range got {
		var id, idx, total, n int
		if _, err := fmt.Sscanf(line, "[%d/%d] shard %d line %d", &idx, &total, &id, &n); err == nil {
			if idx != id || n != next[id] {
				t.Fatalf("line %q out of place (want line %d of shard %d)", line, next[id], id)
			}
			next[id]++
			continue
		}
		if !strings.HasSuffix(line, "] tail without newline") {
			t.Fatalf("mixed line %q", line)
		}
	}
}
