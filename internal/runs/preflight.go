package runs

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// ToolMissing is a Preflight tool that is not on the machine's PATH.
const ToolMissing = "missing"

// Preflight is the machine as a run saw it just before its command (run
// --preflight): diagnostic only. Zero numbers are unknown.
type Preflight struct {
	OS                string `json:"os"`     // e.g. "Debian GNU/Linux 12 (bookworm)"
	Kernel            string `json:"kernel"` // uname -sr
	Arch              string `json:"arch"`   // uname -m
	CPUs              int    `json:"cpus"`
	MemTotalBytes     int64  `json:"memTotalBytes"`
	MemAvailableBytes int64  `json:"memAvailableBytes"`
	// DiskFreeBytes is the space available in the workdir's file system.
	DiskFreeBytes int64 `json:"diskFreeBytes"`
	// Tools maps each asked-for tool to the first line of its version
	// output, or ToolMissing.
	Tools map[string]string `json:"tools"`
	Ms    int64             `json:"ms"` // how long the snapshot took
	// Error says why the snapshot is missing or incomplete.
	Error string `json:"error,omitempty"`
}

func (p *Preflight) clone() *Preflight {
	if p == nil {
		return nil
	}
	c := *p
	if p.Tools != nil {
		c.Tools = make(map[string]string, len(p.Tools))
		for k, v := range p.Tools {
			c.Tools[k] = v
		}
	}
	return &c
}

var versionRe = regexp.MustCompile(`[0-9]+(\.[0-9]+)+[0-9A-Za-z.+~-]*`)

// ToolVersion is the version number in a tool's version line ("git
// version 2.43.0" -> "2.43.0"), or the line itself when it holds none.
func ToolVersion(line string) string {
	if v := versionRe.FindString(line); v != "" {
		return v
	}
	return line
}

// Summary renders p as two lines for a run's notes: the machine, then the
// tools (in order, then any others by name). Values come from the machine:
// control characters are escaped.
func (p Preflight) Summary(order []string) []string {
	var m []string
	if p.OS != "" {
		m = append(m, Escape(p.OS))
	}
	if k := strings.TrimSpace(p.Kernel + " " + p.Arch); k != "" {
		m = append(m, Escape(k))
	}
	if p.CPUs > 0 {
		m = append(m, fmt.Sprintf("%d CPUs", p.CPUs))
	}
	if p.MemTotalBytes > 0 {
		mem := "memory " + gib(p.MemTotalBytes)
		if p.MemAvailableBytes > 0 {
			mem += " (" + gib(p.MemAvailableBytes) + " available)"
		}
		m = append(m, mem)
	}
	if p.DiskFreeBytes > 0 {
		m = append(m, gib(p.DiskFreeBytes)+" disk free in the workdir")
	}
	var lines []string
	if len(m) > 0 {
		lines = append(lines, strings.Join(m, "; "))
	}
	names := append([]string(nil), order...)
	var rest []string
	for n := range p.Tools {
		found := false
		for _, o := range order {
			found = found || o == n
		}
		if !found {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	var tools []string
	for _, n := range append(names, rest...) {
		v, ok := p.Tools[n]
		if !ok {
			continue
		}
		if v != ToolMissing {
			v = ToolVersion(v)
		}
		tools = append(tools, Escape(n+" "+v))
	}
	if len(tools) > 0 {
		lines = append(lines, strings.Join(tools, ", "))
	}
	return lines
}

func gib(b int64) string {
	return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
}
