//go:build !linux

package syncer

import (
	"fmt"
	"io/fs"
)

// ctimeOf is 0 (unknown) off Linux: git's own check is trusted there.
func ctimeOf(fs.FileInfo) int64 { return 0 }

// stampOf identifies one version of a file (size and mtime off Linux).
func stampOf(fi fs.FileInfo) string {
	return fmt.Sprintf("%d:%d", fi.Size(), fi.ModTime().UnixNano())
}
