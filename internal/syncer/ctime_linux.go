package syncer

import (
	"io/fs"
	"syscall"
)

// ctimeOf is fi's status change time in Unix seconds (0 when unknown).
func ctimeOf(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ctim.Sec
	}
	return 0
}
