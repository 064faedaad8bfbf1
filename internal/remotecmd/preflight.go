package remotecmd

import (
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/crabbox-dev/crabbox/internal/runs"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// PreflightBaseTools are always in a preflight snapshot: a run needs them.
var PreflightBaseTools = []string{"git", "rsync"}

// preflightMarker starts every line of the snapshot (a login profile may
// print before it).
const preflightMarker = "crabbox-preflight "

// maxPreflightValue caps one value taken from the machine.
const maxPreflightValue = 200

var toolNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)

// ValidToolName reports whether name may be asked for in a preflight: a
// program name (letters, digits, . _ + -), no path, no options.
func ValidToolName(name string) bool { return toolNameRe.MatchString(name) }

// PreflightTools is the tools a snapshot asks for: the base tools, then
// extra in order, without duplicates or invalid names.
func PreflightTools(extra []string) []string {
	out := append([]string(nil), PreflightBaseTools...)
	for _, t := range extra {
		if ValidToolName(t) && !contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

func contains(l []string, s string) bool {
	for _, e := range l {
		if e == s {
			return true
		}
	}
	return false
}

// PreflightScript is the one round trip of run --preflight: in a login
// bash (the PATH the command will see), it prints "crabbox-preflight
// key=value" lines: os, kernel, arch, cpus, mem (total and available kB),
// disk (kB available in the file system of workdir, or of its nearest
// existing parent) and tool.<name> for each tool (the first line of its
// --version, version or -version output, each tried for at most 10 s with
// no stdin, or "missing"). It changes nothing on the machine. Tools must
// be valid names (PreflightTools); they are quoted all the same.
func PreflightScript(workdir string, tools []string) string {
	return "bash -lc " + sshx.Quote(preflightBody(workdir, tools))
}

// preflightBody is PreflightScript's bash text.
func preflightBody(workdir string, tools []string) string {
	return `m=` + sshx.Quote(preflightMarker) + `
os=$( (. /etc/os-release 2>/dev/null && printf '%s' "${PRETTY_NAME:-$NAME}") 2>/dev/null )
[ -n "$os" ] || os=$(uname -s 2>/dev/null)
printf '%sos=%s\n' "$m" "$os"
printf '%skernel=%s\n' "$m" "$(uname -sr 2>/dev/null)"
printf '%sarch=%s\n' "$m" "$(uname -m 2>/dev/null)"
printf '%scpus=%s\n' "$m" "$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null)"
printf '%smem=%s\n' "$m" "$(awk '/^MemTotal:/{t=$2} /^MemAvailable:/{a=$2} END{print t" "a}' /proc/meminfo 2>/dev/null)"
d=` + sshx.Quote(workdir) + `
while [ ! -d "$d" ] && [ "$d" != / ] && [ -n "$d" ]; do d=$(dirname "$d"); done
printf '%sdisk=%s\n' "$m" "$(df -Pk "$d" 2>/dev/null | awk 'NR==2{print $4}')"
to=; if command -v timeout >/dev/null 2>&1; then to='timeout 10'; fi
for t in ` + sshx.QuoteArgs(tools) + `; do
  if ! command -v "$t" >/dev/null 2>&1; then printf '%stool.%s=missing\n' "$m" "$t"; continue; fi
  v=
  for a in --version version -version; do
    if o=$($to "$t" "$a" </dev/null 2>&1) && [ -n "$o" ]; then v=$(printf '%s\n' "$o" | sed -n '/[^[:space:]]/{p;q;}'); break; fi
  done
  printf '%stool.%s=%s\n' "$m" "$t" "${v:-present (no version output)}"
done
true
`
}

// ParsePreflight reads PreflightScript's answer. Lines without the marker
// are ignored; values are trimmed, stripped of control characters and
// capped. Missing facts stay zero; tools stay as answered.
func ParsePreflight(out string) runs.Preflight {
	var p runs.Preflight
	for _, line := range strings.Split(out, "\n") {
		kv, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), preflightMarker)
		if !ok {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		v = clean(v)
		switch {
		case k == "os":
			p.OS = v
		case k == "kernel":
			p.Kernel = v
		case k == "arch":
			p.Arch = v
		case k == "cpus":
			p.CPUs, _ = strconv.Atoi(v)
		case k == "mem":
			f := strings.Fields(v)
			if len(f) > 0 {
				p.MemTotalBytes = kib(f[0])
			}
			if len(f) > 1 {
				p.MemAvailableBytes = kib(f[1])
			}
		case k == "disk":
			p.DiskFreeBytes = kib(v)
		case strings.HasPrefix(k, "tool."):
			name := strings.TrimPrefix(k, "tool.")
			if !ValidToolName(name) {
				continue
			}
			if p.Tools == nil {
				p.Tools = map[string]string{}
			}
			p.Tools[name] = v
		}
	}
	return p
}

// kib parses a kB count as bytes (0 when it is not a number).
func kib(s string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 || n > 1<<50 {
		return 0
	}
	return n * 1024
}

// clean trims v, drops control characters and caps its length.
func clean(v string) string {
	v = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.TrimSpace(v))
	if len(v) > maxPreflightValue {
		v = strings.ToValidUTF8(v[:maxPreflightValue], "") + "…"
	}
	return v
}
