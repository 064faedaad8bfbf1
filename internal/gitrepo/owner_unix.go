//go:build unix

package gitrepo

import (
	"os"
	"syscall"
)

// devOwner is the device and owner of path (followed if a symlink).
func devOwner(path string) (dev uint64, owner int, ok bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return uint64(st.Dev), int(st.Uid), true
}

// ownedByMe is git's safe.directory ownership test: owned by the
// effective user. Root running under sudo is where git looks at
// $SUDO_UID instead: left to git.
func ownedByMe(owner int) bool {
	euid := os.Geteuid()
	if euid == 0 {
		if _, sudo := os.LookupEnv("SUDO_UID"); sudo {
			return false
		}
	}
	return owner == euid
}
