// Package envfwd selects which local environment variables a remote run
// receives (docs/commands/run.md, Environment) and renders them for a 0600
// remote env file. Values never appear on a command line: the caller sends
// Render's output on the remote command's stdin.
package envfwd

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

var nameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ValidName reports whether s is a shell-safe variable name.
func ValidName(s string) bool { return nameRe.MatchString(s) }

// Allowlist is a set of exact names and PREFIX* patterns, plus the names
// written out exactly on the command line (the only way a denied name is
// forwarded).
type Allowlist struct {
	exact    map[string]bool
	prefixes []string
	explicit map[string]bool
}

// Denied names are credentials or crabbox's own internals: no allowlist
// entry forwards them (no PREFIX* pattern and no config entry), only a
// name written out exactly on the command line (--allow-env NAME).
var (
	deniedPrefixes = []string{
		"CODER_",   // session tokens, agent tokens, deployment credentials
		"CRABBOX_", // crabbox internals (CRABBOX_LEASE_ID & co are set by crabbox itself)
	}
	deniedExact = map[string]bool{
		"SSH_AUTH_SOCK":            true, // the local ssh agent
		"SSH_AGENT_PID":            true,
		"GPG_AGENT_INFO":           true,
		"SSH_ASKPASS":              true,
		"GIT_ASKPASS":              true,
		"KRB5CCNAME":               true,
		"DBUS_SESSION_BUS_ADDRESS": true,
	}
)

// Denied reports whether name is on the deny-list.
func Denied(name string) bool {
	if deniedExact[name] {
		return true
	}
	for _, p := range deniedPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// ParseAllowlists parses the configured entries and the command line's
// (--allow-env). Exact names from the command line may also forward a
// denied name; see Denied.
func ParseAllowlists(configured, cli []string) (Allowlist, error) {
	a, err := ParseAllowlist(append(append([]string{}, configured...), cli...))
	if err != nil {
		return a, err
	}
	c, _ := ParseAllowlist(cli)
	a.explicit = c.exact
	return a, nil
}

// ParseAllowlist parses entries (each may itself be comma-separated). A bare
// "*" is ignored; anything else that is not NAME or PREFIX* is an exit-2
// error naming the entry.
func ParseAllowlist(entries []string) (Allowlist, error) {
	a := Allowlist{exact: map[string]bool{}}
	for _, raw := range entries {
		for _, e := range strings.Split(raw, ",") {
			e = strings.TrimSpace(e)
			switch {
			case e == "" || e == "*":
				continue
			case strings.HasSuffix(e, "*"):
				p := strings.TrimSuffix(e, "*")
				if !ValidName(p) {
					return a, exitcode.Errorf(exitcode.Usage, "env allow entry %q must be NAME or PREFIX* with [A-Za-z_][A-Za-z0-9_]*", e)
				}
				a.prefixes = append(a.prefixes, p)
			case ValidName(e):
				a.exact[e] = true
			default:
				return a, exitcode.Errorf(exitcode.Usage, "env allow entry %q must be NAME or PREFIX* with [A-Za-z_][A-Za-z0-9_]*", e)
			}
		}
	}
	return a, nil
}

// Allows reports whether name is allowlisted. A denied name is allowed
// only when the command line names it exactly.
func (a Allowlist) Allows(name string) bool {
	if Denied(name) {
		return a.explicit[name]
	}
	if a.exact[name] {
		return true
	}
	for _, p := range a.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Matched reports whether an entry (exact or pattern) names name, before
// the deny-list is applied.
func (a Allowlist) Matched(name string) bool {
	if a.exact[name] {
		return true
	}
	for _, p := range a.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Withheld are the names set in environ that an entry matched but the
// deny-list kept back (for a note; never values).
func (a Allowlist) Withheld(environ []string) []string {
	var out []string
	for _, kv := range environ {
		k, _, ok := strings.Cut(kv, "=")
		if ok && ValidName(k) && a.Matched(k) && !a.Allows(k) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Forced are the denied names among vars: forwarded only because the
// command line named them exactly (for a warning).
func Forced(vars map[string]string) []string {
	var out []string
	for k := range vars {
		if Denied(k) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Select returns the allowlisted variables of environ (KEY=VALUE entries)
// that are set. Only names set locally are forwarded.
func (a Allowlist) Select(environ []string) map[string]string {
	out := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && ValidName(k) && a.Allows(k) {
			out[k] = v
		}
	}
	return out
}

// ParseProfile reads KEY=value / export KEY=value lines (# comments,
// single and double quotes with \" and \\ escapes in double quotes). Lines
// whose value contains $( or a backtick, a NUL byte, unquoted spaces, or a
// bad name are skipped and reported in skipped (names only, never values).
func ParseProfile(data string) (vars map[string]string, skipped []string) {
	vars = map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		s = strings.TrimPrefix(s, "export ")
		k, v, ok := strings.Cut(s, "=")
		k = strings.TrimSpace(k)
		if !ok || !ValidName(k) {
			skipped = append(skipped, fmt.Sprintf("line %d", line))
			continue
		}
		val, ok := unquote(v)
		// A NUL cannot be held by an environment variable (bash drops it
		// when sourcing), so the value would not arrive literally.
		if !ok || strings.Contains(val, "$(") || strings.Contains(val, "`") || strings.ContainsRune(val, 0) {
			skipped = append(skipped, k)
			continue
		}
		vars[k] = val
	}
	return vars, skipped
}

func unquote(v string) (string, bool) {
	v = strings.TrimSpace(v)
	switch {
	case len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'':
		inner := v[1 : len(v)-1]
		return inner, !strings.Contains(inner, "'")
	case len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"':
		var b strings.Builder
		inner := v[1 : len(v)-1]
		for i := 0; i < len(inner); i++ {
			c := inner[i]
			if c == '\\' && i+1 < len(inner) && (inner[i+1] == '"' || inner[i+1] == '\\') {
				b.WriteByte(inner[i+1])
				i++
				continue
			}
			if c == '"' {
				return "", false
			}
			b.WriteByte(c)
		}
		return b.String(), true
	default:
		if i := strings.Index(v, " #"); i >= 0 {
			v = strings.TrimSpace(v[:i])
		}
		if strings.ContainsAny(v, " \t'\"") {
			return "", false
		}
		return v, true
	}
}

// ReadProfile parses a profile file.
func ReadProfile(path string) (map[string]string, []string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, exitcode.Errorf(exitcode.Usage, "--env-from-profile: %v", err)
	}
	v, s := ParseProfile(string(b))
	return v, s, nil
}

// Render returns `export NAME='value'` lines, sorted, for a remote env file.
func Render(vars map[string]string) string {
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString("export " + k + "=" + sshx.Quote(vars[k]) + "\n")
	}
	return b.String()
}

// Names returns the sorted names of vars (for messages: never values).
func Names(vars map[string]string) []string {
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
