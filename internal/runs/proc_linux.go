package runs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
)

// procStat reads /proc/<pid>/stat: the process state (field 3) and its
// start time in clock ticks after boot (field 22). The command name (field
// 2) may hold spaces and parentheses, so fields are counted from the last
// ')'.
func procStat(pid int) (state byte, start uint64, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := bytes.Fields(data[i+1:])
	if len(fields) < 20 || len(fields[0]) != 1 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	start, err = strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: start time: %w", pid, err)
	}
	return fields[0][0], start, nil
}

// processStart is pid's start time from /proc (0 when unknown).
func processStart(pid int) (uint64, error) {
	_, start, err := procStat(pid)
	return start, err
}

// processAlive reports whether pid is a live (not zombie) process and, when
// wantStart is known, the same process that was recorded (not a reused PID).
func processAlive(pid int, wantStart uint64) bool {
	state, start, err := procStat(pid)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		if _, serr := os.Stat("/proc/self/stat"); serr == nil {
			return false // /proc works and the process is gone
		}
		return signalAlive(pid)
	default:
		return signalAlive(pid)
	}
	if state == 'Z' || state == 'X' || state == 'x' {
		return false
	}
	return wantStart == 0 || start == wantStart
}

// bootID is the kernel's boot ID (a random UUID drawn at each boot; ""
// when unreadable).
func bootID() string {
	data, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(data))
}
