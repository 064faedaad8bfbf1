package coder

import (
	"path/filepath"
	"strings"

	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// SSH facts every Coder target shares (docs/providers/coder.md, SSH).
const (
	SSHUser = "coder"
	SSHPort = 22
	// ReadyCheck succeeds when the workspace can take a sync and a command.
	ReadyCheck = "command -v git >/dev/null && command -v rsync >/dev/null && command -v tar >/dev/null"
	// DefaultWait is the default `coder ssh --stdio --wait` mode.
	DefaultWait = "yes"

	maxHostAlias = 63
)

// HostAlias is the ssh Host used for a workspace ref. It only keys
// known_hosts and the control path; the ProxyCommand decides where ssh
// goes.
//
// A bare ref is the workspace name itself ("coder-workspace" if empty). An
// owner-qualified ref is coder-<normalize(owner/name)>-<6 hex SHA-1(ref)>,
// at most 63 chars, so owners sharing a workspace name get distinct aliases.
// A bare name that is not a safe host token (starts with '-', or holds
// characters outside [A-Za-z0-9._-]) gets the hashed form too.
func HostAlias(ref string) string {
	if !strings.Contains(ref, "/") {
		if ref == "" {
			return "coder-workspace"
		}
		if safeHostToken(ref) {
			return ref
		}
	}
	h := sha1Hex(ref)[:6]
	base := lease.NormalizeSlug(ref)
	if room := maxHostAlias - len("coder-") - 1 - len(h); len(base) > room {
		base = strings.Trim(base[:room], "-")
	}
	if base == "" {
		return "coder-" + h
	}
	return "coder-" + base + "-" + h
}

func safeHostToken(s string) bool {
	if s == "" || s[0] == '-' || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// KnownHostsDir is <configDir>/coder/known_hosts.d, where configDir is
// crabbox's own config dir (e.g. ~/.config/crabbox).
func KnownHostsDir(configDir string) string {
	return filepath.Join(configDir, "coder", "known_hosts.d")
}

// KnownHostsFile is the per-workspace known_hosts file: its name is 12 hex
// of SHA-1(ref + NUL + (workspace ID, or ref when the ID is empty)), so a
// recreated workspace (new ID) never meets a stale host key.
func KnownHostsFile(configDir, ref, workspaceID string) string {
	id := workspaceID
	if id == "" {
		id = ref
	}
	return filepath.Join(KnownHostsDir(configDir), sha1Hex(ref + "\x00" + id)[:12])
}

// ProxyCommand is the ssh ProxyCommand reaching a workspace through the
// Coder CLI:
//
//	'<cliPath>' ssh --stdio --disable-autostart --wait '<wait>' '<ref>'
//
// --disable-autostart: the tunnel never starts a stopped workspace. Only
// crabbox's own `coder start` (Resolve in Prepare mode) may, so a tunnel
// opened while crabbox starts the workspace cannot race it into "A
// workspace build is already active". A tunnel to a stopped workspace
// fails at once ("workspace must be started"); one to a workspace whose
// start build is still running waits for that build.
//
// Each variable part is POSIX single-quoted so paths with spaces survive.
// Empty cliPath means "coder"; empty wait means "yes".
func ProxyCommand(cliPath, wait, ref string) string {
	if strings.TrimSpace(cliPath) == "" {
		cliPath = "coder"
	}
	wait = strings.ToLower(strings.TrimSpace(wait))
	if wait == "" {
		wait = DefaultWait
	}
	// Not %-escaped here: sshx escapes ssh's % tokens once, where the
	// option is written.
	return sshx.Quote(cliPath) + " ssh --stdio --disable-autostart --wait " + sshx.Quote(wait) + " " + sshx.Quote(ref)
}
