//go:build unix

package sshx

import (
	"os"
	"syscall"
)

// privateDir reports whether dir is a directory (not a link) owned by uid
// with mode 0700.
func privateDir(dir string, uid int) bool {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == uid
}
