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
)

func self() (host string, start uint64) {
	selfOnce.Do(func() {
		selfHost, _ = os.Hostname()
		selfStart, _ = processStart(os.Getpid())
	})
	return selfHost, selfStart
}

// ownerAlive reports whether the process that owns a running record may
// still be running it. A record from another host cannot be checked and
// counts as alive; a record without a PID counts as dead.
func ownerAlive(rec *Record) bool {
	if rec.PID <= 0 {
		return false
	}
	if host, _ := self(); rec.Host != "" && host != "" && rec.Host != host {
		return true
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
