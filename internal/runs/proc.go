package runs

import (
	"errors"
	"os"
	"sync"
	"syscall"
)

var (
	selfOnce  sync.Once
	selfHost  string
	selfStart uint64
	selfBoot  string
)

// owner is this process as it is recorded in the runs it owns.
type owner struct {
	host  string // informational only: liveness never depends on it
	start uint64 // start time in clock ticks after boot; 0 when unknown
	boot  string // the kernel's boot ID; "" when unknown
}

func self() owner {
	selfOnce.Do(func() {
		selfHost, _ = os.Hostname()
		selfStart, _ = processStart(os.Getpid())
		selfBoot = bootID()
	})
	return owner{host: selfHost, start: selfStart, boot: selfBoot}
}

// ownerAlive reports whether the process that owns a running record may
// still be running it. The host name plays no part (it changes under a
// running process: containers, laptops changing networks). A record
// written during another boot (another boot ID) is dead: the machine has
// rebooted since. Otherwise the PID decides, with its start time telling a
// reused PID apart. A record without a boot ID (written before crabbox
// recorded one, or where it is unknown) is checked by PID and start time
// alone. A record without a PID counts as dead.
func ownerAlive(rec *Record) bool {
	if rec.PID <= 0 {
		return false
	}
	if boot := self().boot; rec.BootID != "" && boot != "" && rec.BootID != boot {
		return false
	}
	return processAlive(rec.PID, rec.PIDStart)
}

// signalAlive probes pid with signal 0 (no /proc to read).
func signalAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, os.ErrPermission)
}
