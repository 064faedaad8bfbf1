package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// DefaultSSHWorkRoot is the remote base directory for work dirs on SSH
// hosts when neither ssh.workRoot, a host's workRoot nor the generic
// workRoot is set.
const DefaultSSHWorkRoot = "/var/tmp/crabbox"

// DefaultSSHPort is the port of a host given without one.
const DefaultSSHPort = 22

// Limits of SSH host values.
const (
	maxHostLen     = 253
	maxSSHUserLen  = 64
	maxHostNameLen = 64
)

// SSHConfig is the ssh: block (provider ssh: existing Linux hosts).
type SSHConfig struct {
	Hosts []SSHHost
	// IdentityFile, KnownHostsFile and WorkRoot apply to hosts that do not
	// set their own.
	IdentityFile   string
	KnownHostsFile string
	WorkRoot       string
	// CleanWorkdir removes crabbox's work dir of a lease
	// (<workRoot>/<leaseID>) when the lease is released.
	CleanWorkdir bool
	// Persist is how long a lease's ssh control master stays up after its
	// last session, for the next crabbox process (0: one per process).
	Persist time.Duration
}

// SSHHost is one configured host. Port is never 0 and Name never empty
// after loading.
type SSHHost struct {
	Name           string
	Host           string
	User           string // "" lets ssh choose (ssh_config, else the local user)
	Port           int
	IdentityFile   string // "" means ssh.identityFile
	KnownHostsFile string // "" means ssh.knownHostsFile
	WorkRoot       string // "" means ssh.workRoot
}

// Endpoint is user@host:port (host:port without a user; IPv6 in brackets).
func (h SSHHost) Endpoint() string {
	hp := net.JoinHostPort(h.Host, strconv.Itoa(h.Port))
	if h.User == "" {
		return hp
	}
	return h.User + "@" + hp
}

// DefaultSSHHostName is a host's name when none is given: the host, plus
// :port when the port is not 22.
func DefaultSSHHostName(host string, port int) string {
	if port == 0 || port == DefaultSSHPort {
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

func (h SSHHost) String() string {
	var b strings.Builder
	if h.Name != DefaultSSHHostName(h.Host, h.Port) {
		b.WriteString(h.Name + "=")
	}
	b.WriteString(h.Endpoint())
	for _, kv := range [][2]string{{"identityFile", h.IdentityFile}, {"knownHostsFile", h.KnownHostsFile}, {"workRoot", h.WorkRoot}} {
		if kv[1] != "" {
			b.WriteString(" " + kv[0] + "=" + kv[1])
		}
	}
	return b.String()
}

func sshHosts(v any) []SSHHost { return v.([]SSHHost) }

// ParseSSHEndpoint parses [user@]host[:port] (IPv6 as [addr] or
// [addr]:port, or bare). The result is not validated; CheckSSHHosts does.
func ParseSSHEndpoint(s string) (SSHHost, error) {
	s = strings.TrimSpace(s)
	h := SSHHost{}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		h.User, s = s[:i], s[i+1:]
		if h.User == "" {
			return h, fmt.Errorf("host %q has an empty user before @", s)
		}
	}
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return h, fmt.Errorf("host %q lacks the closing ]", s)
		}
		h.Host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			p, ok := strings.CutPrefix(rest, ":")
			if !ok {
				return h, fmt.Errorf("unexpected %q after [%s]", rest, h.Host)
			}
			port, err := parsePort(p)
			if err != nil {
				return h, err
			}
			h.Port = port
		}
	case strings.Count(s, ":") == 1:
		host, p, _ := strings.Cut(s, ":")
		port, err := parsePort(p)
		if err != nil {
			return h, err
		}
		h.Host, h.Port = host, port
	default: // a name, or a bare IPv6 address
		h.Host = s
	}
	return h, nil
}

func parsePort(p string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(p))
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q must be a number from 1 to 65535", p)
	}
	return n, nil
}

// parseSSHHostsText parses a comma-separated [user@]host[:port] list (env,
// flag, or a YAML string).
func parseSSHHostsText(raw string, noneClears bool) ([]SSHHost, error) {
	if noneClears && strings.EqualFold(strings.TrimSpace(raw), "none") {
		return []SSHHost{}, nil
	}
	out := []SSHHost{}
	for _, e := range splitList(raw) {
		h, err := ParseSSHEndpoint(e)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

var sshHostFields = []string{"name", "host", "user", "port", "identityFile", "knownHostsFile", "workRoot"}

// parseSSHHostsNode parses ssh.hosts from YAML: a list whose entries are
// [user@]host[:port] strings or mappings of sshHostFields, or one
// comma-separated string.
func parseSSHHostsNode(n *yaml.Node) ([]SSHHost, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if strings.ContainsRune(n.Value, 0) {
			return nil, fmt.Errorf("must not contain a NUL byte (got %q)", n.Value)
		}
		return parseSSHHostsText(n.Value, false)
	case yaml.SequenceNode:
	default:
		return nil, errors.New("must be a list of hosts")
	}
	out := []SSHHost{}
	for _, e := range n.Content {
		e = resolveAlias(e)
		if isNull(e) {
			continue
		}
		switch e.Kind {
		case yaml.ScalarNode:
			if strings.ContainsRune(e.Value, 0) {
				return nil, fmt.Errorf("must not contain a NUL byte (got %q)", e.Value)
			}
			h, err := ParseSSHEndpoint(e.Value)
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", e.Line, err)
			}
			out = append(out, h)
		case yaml.MappingNode:
			h, err := parseSSHHostMapping(e)
			if err != nil {
				return nil, err
			}
			out = append(out, h)
		default:
			return nil, fmt.Errorf("line %d: each host must be user@host[:port] or a mapping of %s", e.Line, strings.Join(sshHostFields, ", "))
		}
	}
	return out, nil
}

func parseSSHHostMapping(m *yaml.Node) (SSHHost, error) {
	var h SSHHost
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], resolveAlias(m.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return h, fmt.Errorf("line %d: host keys must be strings", k.Line)
		}
		if seen[k.Value] {
			return h, fmt.Errorf("line %d: host key %q is set twice", k.Line, k.Value)
		}
		seen[k.Value] = true
		if isNull(v) {
			continue
		}
		if v.Kind != yaml.ScalarNode {
			return h, fmt.Errorf("line %d: host %s must be a single value, not a %s", k.Line, k.Value, nodeKindName(v))
		}
		val := v.Value
		if strings.ContainsRune(val, 0) {
			return h, fmt.Errorf("line %d: host %s must not contain a NUL byte (got %q)", k.Line, k.Value, val)
		}
		switch k.Value {
		case "name":
			h.Name = val
		case "host":
			h.Host = val
		case "user":
			h.User = val
		case "port":
			p, err := parsePort(val)
			if err != nil {
				return h, fmt.Errorf("line %d: %v", k.Line, err)
			}
			h.Port = p
		case "identityFile":
			h.IdentityFile = val
		case "knownHostsFile":
			h.KnownHostsFile = val
		case "workRoot":
			h.WorkRoot = val
		default:
			// A typo here (identityfile) would silently pick another key
			// or known_hosts file: refuse it.
			return h, fmt.Errorf("line %d: unknown host key %q (known: %s)", k.Line, k.Value, strings.Join(sshHostFields, ", "))
		}
	}
	if strings.TrimSpace(h.Host) == "" {
		return h, fmt.Errorf("line %d: a host mapping needs a host", m.Line)
	}
	return h, nil
}

// checkSSHHosts validates and normalizes ssh.hosts (see CheckSSHHosts).
func checkSSHHosts(v any) (any, error) { return CheckSSHHosts(sshHosts(v)) }

// CheckSSHHosts validates hosts and fills defaults (port 22, the name).
// Every value ends up on an ssh command line or in a remote shell command,
// so anything ssh could read as an option (a leading -), whitespace,
// control characters, shell metacharacters or % tokens is refused. Names
// and endpoints must be unique.
func CheckSSHHosts(in []SSHHost) ([]SSHHost, error) {
	out := make([]SSHHost, 0, len(in))
	names, endpoints := map[string]bool{}, map[string]bool{}
	for _, h := range in {
		h.Host = strings.TrimSpace(h.Host)
		h.User = strings.TrimSpace(h.User)
		h.Name = strings.TrimSpace(h.Name)
		h.Host = strings.TrimSuffix(strings.TrimPrefix(h.Host, "["), "]")
		if err := checkSSHHostName(h.Host); err != nil {
			return nil, err
		}
		if err := checkSSHUser(h.User); err != nil {
			return nil, fmt.Errorf("host %s: %v", h.Host, err)
		}
		if h.Port == 0 {
			h.Port = DefaultSSHPort
		}
		if h.Port < 1 || h.Port > 65535 {
			return nil, fmt.Errorf("host %s: port %d must be from 1 to 65535", h.Host, h.Port)
		}
		if h.Name == "" {
			h.Name = DefaultSSHHostName(h.Host, h.Port)
		} else if err := checkSSHName(h.Name); err != nil {
			return nil, fmt.Errorf("host %s: %v", h.Host, err)
		}
		for _, f := range []struct {
			key string
			p   *string
		}{{"identityFile", &h.IdentityFile}, {"knownHostsFile", &h.KnownHostsFile}} {
			s, err := checkLocalPath(*f.p)
			if err != nil {
				return nil, fmt.Errorf("host %s: %s %v", h.Name, f.key, err)
			}
			*f.p = s
		}
		if strings.TrimSpace(h.WorkRoot) != "" {
			wr, err := checkSSHWorkRoot(h.WorkRoot)
			if err != nil {
				return nil, fmt.Errorf("host %s: workRoot %v", h.Name, err)
			}
			h.WorkRoot = str(wr)
		} else {
			h.WorkRoot = ""
		}
		key := strings.ToLower(h.Name)
		if names[key] {
			return nil, fmt.Errorf("host name %q is used twice; give each host its own name", h.Name)
		}
		ep := strings.ToLower(h.Endpoint())
		if endpoints[ep] {
			return nil, fmt.Errorf("host %s is listed twice", h.Endpoint())
		}
		names[key], endpoints[ep] = true, true
		out = append(out, h)
	}
	return out, nil
}

// checkSSHHostName: a DNS name or an IP address, nothing ssh could read
// as an option or expand.
func checkSSHHostName(h string) error {
	switch {
	case h == "":
		return errors.New("host must not be empty")
	case len(h) > maxHostLen:
		return fmt.Errorf("host %.40q… is longer than %d characters", h, maxHostLen)
	case strings.HasPrefix(h, "-"):
		return fmt.Errorf("host %q must not start with -", h)
	}
	if strings.Contains(h, ":") {
		if ip := net.ParseIP(h); ip == nil || ip.To4() != nil {
			return fmt.Errorf("host %q is not a host name or IP address", h)
		}
		return nil
	}
	for _, r := range h {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '-' || r == '_') {
			return fmt.Errorf("host %q may only hold letters, digits, . - _ (or be an IP address)", h)
		}
	}
	if strings.HasPrefix(h, ".") || strings.Contains(h, "..") {
		return fmt.Errorf("host %q is not a host name", h)
	}
	return nil
}

func checkSSHUser(u string) error {
	if u == "" {
		return nil
	}
	if len(u) > maxSSHUserLen {
		return fmt.Errorf("user %.40q… is longer than %d characters", u, maxSSHUserLen)
	}
	if strings.HasPrefix(u, "-") {
		return fmt.Errorf("user %q must not start with -", u)
	}
	for _, r := range u {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '-' || r == '_') {
			return fmt.Errorf("user %q may only hold letters, digits, . - _", u)
		}
	}
	return nil
}

// checkSSHName: a host's name is how commands address it (crabbox status
// <name>) and names its known_hosts file.
func checkSSHName(n string) error {
	if len(n) > maxHostNameLen {
		return fmt.Errorf("name %.40q… is longer than %d characters", n, maxHostNameLen)
	}
	for i, r := range n {
		ok := 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
		if i > 0 {
			ok = ok || r == '.' || r == '-' || r == '_' || r == ':'
		}
		if !ok {
			return fmt.Errorf("name %q must start with a letter or digit and hold only letters, digits, dots, dashes, underscores and colons", n)
		}
	}
	if strings.HasPrefix(strings.ToLower(n), "cbx_") {
		return fmt.Errorf("name %q looks like a lease ID", n)
	}
	return nil
}

// checkLocalPath: "" or a local file path without control characters.
func checkLocalPath(p string) (string, error) {
	p = strings.TrimSpace(p)
	if strings.IndexFunc(p, unicode.IsControl) >= 0 {
		return "", fmt.Errorf("must not contain control characters (got %q)", p)
	}
	return p, nil
}

func checkLocalPathValue(v any) (any, error) {
	s, err := checkLocalPath(str(v))
	if err != nil {
		return nil, err
	}
	return s, nil
}

// checkSSHWorkRoot accepts "" (the default or the generic root), else a
// clean absolute path that is not too broad.
func checkSSHWorkRoot(v any) (any, error) { return checkCoderWorkRoot(v) }

// expandSSHHosts expands a leading ~ in the hosts' local paths.
func expandSSHHosts(hs []SSHHost, env Env) []SSHHost {
	out := make([]SSHHost, len(hs))
	for i, h := range hs {
		h.IdentityFile = expandHome(h.IdentityFile, env)
		h.KnownHostsFile = expandHome(h.KnownHostsFile, env)
		out[i] = h
	}
	return out
}
