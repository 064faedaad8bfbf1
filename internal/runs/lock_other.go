//go:build !unix

package runs

import "os"

// lockFile only creates the lock file where flock is not available; the
// atomic rename of run.json keeps readers safe either way.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return nil, err
	}
	return func() { _ = f.Close() }, nil
}
