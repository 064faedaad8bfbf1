package fsx

import (
	"fmt"
	"os"
	"path/filepath"
)

// PrivateDirMode is the mode of every local state directory crabbox makes.
const PrivateDirMode os.FileMode = 0o700

// EnsurePrivateDir creates dir (and missing parents) with mode 0700 and
// makes sure dir itself is 0700, tightening an existing one. When it creates
// dir it also fsyncs the parent, so the new entry survives a crash. A
// non-directory in its place is an error.
func EnsurePrivateDir(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		if fi.Mode().Perm() != PrivateDirMode {
			return os.Chmod(dir, PrivateDirMode)
		}
		return nil
	}
	if err := os.MkdirAll(dir, PrivateDirMode); err != nil {
		return err
	}
	if err := os.Chmod(dir, PrivateDirMode); err != nil {
		return err
	}
	_ = SyncDir(filepath.Dir(dir))
	return nil
}
