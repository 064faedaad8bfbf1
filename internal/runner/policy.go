package runner

// Policy is what decides whether a lease is released after a run.
type Policy struct {
	// StopAfter is --stop-after: success, always, failure, never, or ""
	// (the default below).
	StopAfter string
	// Fresh is true for a lease the run acquired itself (no --id).
	Fresh         bool
	Keep          bool
	KeepOnFailure bool
}

// ShouldRelease applies p to a run that failed or not. An explicit
// --stop-after decides alone; otherwise only a fresh lease is released,
// unless --keep, or --keep-on-failure and the run failed.
func ShouldRelease(p Policy, failed bool) bool {
	switch p.StopAfter {
	case "always":
		return true
	case "never":
		return false
	case "success":
		return !failed
	case "failure":
		return failed
	}
	if !p.Fresh || p.Keep {
		return false
	}
	return !(p.KeepOnFailure && failed)
}
