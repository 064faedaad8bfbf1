package execx

import "strings"

// FirstLine is the first line of s once surrounding white space is
// trimmed: the gist of an error or of a program's output, on one line.
func FirstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// LastLines is the last three non-empty lines of s, each trimmed, joined by
// "; ": the end of a failed program's stderr, where its reason usually is.
func LastLines(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			keep = append(keep, l)
		}
	}
	if len(keep) > 3 {
		keep = keep[len(keep)-3:]
	}
	return strings.Join(keep, "; ")
}
