package fsx

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/gofrs/flock"
)

// lockPollInterval is how often LockContext retries a busy lock.
const lockPollInterval = 100 * time.Millisecond

// Lock blocks until it holds the exclusive lock of path, the lock file
// (created 0600 when missing). Lock files are never deleted: deleting one
// that another process waits on breaks mutual exclusion. Two holders in one
// process exclude each other too, and the OS drops a dead process's lock.
// unlock releases it; calling unlock again does nothing.
func Lock(path string) (unlock func(), err error) {
	slot := procSlot(path)
	slot <- struct{}{}
	fl := flock.New(path, flock.SetPermissions(0o600))
	for {
		err = fl.Lock()
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		<-slot
		return nil, err
	}
	return unlocker(fl, slot), nil
}

// LockContext is Lock with a bounded wait: when the lock is busy it calls
// waiting (when not nil) once, to tell the user why nothing happens, then
// retries every 100 ms until it holds the lock or ctx is done.
func LockContext(ctx context.Context, path string, waiting func()) (unlock func(), err error) {
	told := false
	tell := func() {
		if !told && waiting != nil {
			waiting()
		}
		told = true
	}
	slot := procSlot(path)
	select {
	case slot <- struct{}{}:
	default:
		tell()
		select {
		case slot <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	fl := flock.New(path, flock.SetPermissions(0o600))
	ok, err := fl.TryLock()
	if err == nil && !ok {
		tell()
		ok, err = fl.TryLockContext(ctx, lockPollInterval)
	}
	if err != nil || !ok { // TryLockContext gives up only with an error
		<-slot
		return nil, err
	}
	return unlocker(fl, slot), nil
}

func unlocker(fl *flock.Flock, slot chan struct{}) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = fl.Unlock()
			<-slot
		})
	}
}

var (
	procSlotsMu sync.Mutex
	procSlots   = map[string]chan struct{}{}
)

// procSlot is the in-process half of a lock: one slot per absolute path,
// taken before the OS lock, so goroutines of one process queue here and
// never rely on how a platform scopes its file locks.
func procSlot(path string) chan struct{} {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	procSlotsMu.Lock()
	defer procSlotsMu.Unlock()
	s := procSlots[path]
	if s == nil {
		s = make(chan struct{}, 1)
		procSlots[path] = s
	}
	return s
}
