//go:build !linux

package runs

// processStart is unknown without /proc.
func processStart(pid int) (uint64, error) { return 0, nil }

// processAlive probes pid with signal 0; without a start time a reused PID
// cannot be told apart.
func processAlive(pid int, _ uint64) bool { return signalAlive(pid) }

// bootID is unknown without /proc: liveness falls back to the PID.
func bootID() string { return "" }
