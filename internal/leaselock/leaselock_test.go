package leaselock

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSerializesHolders(t *testing.T) {
	dir := t.TempDir()
	var inside, maxInside, waited atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := Acquire(context.Background(), dir, "cbx_000000000001", func() { waited.Add(1) })
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for {
				m := maxInside.Load()
				if n <= m || maxInside.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
			inside.Add(-1)
			l.Release()
		}()
	}
	wg.Wait()
	if maxInside.Load() != 1 {
		t.Errorf("%d holders at once", maxInside.Load())
	}
	if waited.Load() == 0 {
		t.Errorf("nobody was told they wait")
	}
	st, err := os.Stat(filepath.Join(dir, "lease-locks", "cbx_000000000001.lock"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("lock file: %v %v", st, err)
	}
}

func TestWaitIsBoundedByContext(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(context.Background(), dir, "cbx_000000000002", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if _, err := Acquire(ctx, dir, "cbx_000000000002", nil); err == nil {
		t.Fatal("second holder got the lock")
	}
	// Another lease is independent.
	l2, err := Acquire(context.Background(), dir, "cbx_000000000003", nil)
	if err != nil {
		t.Fatal(err)
	}
	l2.Release()
	l2.Release()
}
