//go:build !linux

package execx

import (
	"os/exec"
	"syscall"
)

// sysProcAttr puts the child in its own process group, so a timeout or
// cancel ends its grandchildren too. (Only Linux can also tie the child's
// life to crabbox's: see proc_linux.go.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

func runLocked(cmd *exec.Cmd) error { return cmd.Run() }
