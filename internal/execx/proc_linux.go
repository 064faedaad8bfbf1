//go:build linux

package execx

import (
	"os/exec"
	"runtime"
	"syscall"
)

// sysProcAttr puts the child in its own process group (so a timeout or
// cancel ends its grandchildren too) and has the kernel SIGKILL it when
// crabbox dies: a child must never outlive the process that started it
// (issue 8, defect 4: a killed run's rsync kept writing into the workdir
// after the next run began).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// runLocked runs cmd with the calling goroutine locked to its OS thread
// from Start to Wait. Linux delivers Pdeathsig when the *thread* that
// forked the child exits, not the process; the Go runtime ends a thread
// when a goroutine locked to it exits, so without the lock the child
// could be killed while crabbox still runs. Locked for the child's whole
// life, this thread cannot end before Wait returns.
func runLocked(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return cmd.Run()
}
