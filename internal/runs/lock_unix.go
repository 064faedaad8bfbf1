//go:build unix

package runs

import (
	"errors"
	"os"
	"syscall"
)

// lockFile takes an exclusive flock on path (created 0600, never deleted:
// deleting a lock file others may wait on breaks mutual exclusion). flock
// locks belong to the open file, so two lockFile calls in one process
// exclude each other too. The kernel drops the lock when its owner dies.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}
