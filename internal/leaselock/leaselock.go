// Package leaselock serializes use of one lease's remote workdir by
// crabbox processes on this machine: two runs on the same lease never sync
// into each other's half-written tree, and a command never sees a tree that
// another run is changing. Claims are per machine, so every process that can
// address a lease by its claim shares this lock.
package leaselock

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"
)

// Lock is a held lease lock.
type Lock struct{ fl *flock.Flock }

// pollInterval is how often a waiting process retries the lock.
var pollInterval = 100 * time.Millisecond

// Acquire takes the lock for leaseID under stateDir, waiting while another
// process holds it. waiting is called once if the lock is busy (to tell the
// user why nothing happens). ctx bounds the wait.
func Acquire(ctx context.Context, stateDir, leaseID string, waiting func()) (*Lock, error) {
	dir := filepath.Join(stateDir, "lease-locks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, leaseID+".lock")
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o600); err == nil {
		f.Close()
	}
	fl := flock.New(path)
	ok, err := fl.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lease lock %s: %w", path, err)
	}
	if !ok {
		if waiting != nil {
			waiting()
		}
		if _, err := fl.TryLockContext(ctx, pollInterval); err != nil {
			return nil, fmt.Errorf("waiting for lease %s: %w", leaseID, err)
		}
	}
	return &Lock{fl: fl}, nil
}

// Release lets the next process in. Safe on nil and twice.
func (l *Lock) Release() {
	if l != nil && l.fl != nil {
		l.fl.Unlock()
	}
}
