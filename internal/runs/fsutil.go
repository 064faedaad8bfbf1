package runs

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/crabbox-dev/crabbox/internal/fsx"
)

const (
	dirMode  os.FileMode = 0o700
	fileMode os.FileMode = 0o600
)

// ensureDir creates dir (and missing parents) with mode 0700 and makes sure
// dir itself is 0700.
func ensureDir(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		if fi.Mode().Perm() != dirMode {
			return os.Chmod(dir, dirMode)
		}
		return nil
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return err
	}
	if err := os.Chmod(dir, dirMode); err != nil {
		return err
	}
	_ = syncDir(filepath.Dir(dir))
	return nil
}

func syncDir(dir string) error { return fsx.SyncDir(dir) }

// writeAtomic writes data to path atomically and durably (mode 0600).
func writeAtomic(path string, data []byte) error {
	return fsx.WriteFileAtomic(path, data, fileMode)
}
