package claims

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Allocate is exclusive: a slug chosen after reading the claims is written
// before anyone else reads them.
func TestAllocateIsExclusive(t *testing.T) {
	s := New(t.TempDir())
	var inside, most atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Allocate(func() error {
				n := inside.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(10 * time.Millisecond)
				inside.Add(-1)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Errorf("%d allocations at once", most.Load())
	}
	// The lock file lives with the claim locks, 0600, and is no claim.
	if list, problems, err := s.List(); err != nil || len(list) != 0 || len(problems) != 0 {
		t.Errorf("List after Allocate: %v %v %v", list, problems, err)
	}
}
