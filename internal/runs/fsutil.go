package runs

import (
	"os"

	"github.com/crabbox-dev/crabbox/internal/fsx"
)

const (
	dirMode  os.FileMode = 0o700
	fileMode os.FileMode = 0o600
)

func syncDir(dir string) error { return fsx.SyncDir(dir) }

// writeAtomic writes data to path atomically and durably (mode 0600).
func writeAtomic(path string, data []byte) error {
	return fsx.WriteFileAtomic(path, data, fileMode)
}
