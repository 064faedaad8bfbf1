// Package leaselock serializes use of one lease's remote workdir by
// crabbox processes on this machine: two runs on the same lease never sync
// into each other's half-written tree, and a command never sees a tree that
// another run is changing. Claims are per machine, so every process that can
// address a lease by its claim shares this lock.
package leaselock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/crabbox-dev/crabbox/internal/fsx"
)

// Lock is a held lease lock.
type Lock struct{ unlock func() }

// Acquire takes the lock for leaseID under stateDir, waiting while another
// process holds it. waiting is called once if the lock is busy (to tell the
// user why nothing happens). ctx bounds the wait.
func Acquire(ctx context.Context, stateDir, leaseID string, waiting func()) (*Lock, error) {
	dir := filepath.Join(stateDir, "lease-locks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, leaseID+".lock")
	unlock, err := fsx.LockContext(ctx, path, waiting)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil, fmt.Errorf("waiting for lease %s: %w", leaseID, err)
		}
		return nil, fmt.Errorf("lease lock %s: %w", path, err)
	}
	return &Lock{unlock: unlock}, nil
}

// Release lets the next process in. Safe on nil and twice.
func (l *Lock) Release() {
	if l != nil && l.unlock != nil {
		l.unlock()
	}
}
