package sshx

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/crabbox-dev/crabbox/internal/lease"
)

// Defaults for Options.
const (
	DefaultConnectTimeout     = 10
	DefaultConnectionAttempts = 3
	defaultPort               = 22
)

// Options tune BaseArgs.
type Options struct {
	ConnectTimeout     int // seconds; 0 means DefaultConnectTimeout
	ConnectionAttempts int // 0 means DefaultConnectionAttempts
	// ControlPath, when set, adds -o ControlPath=<p>; the value is given to
	// ssh as is (ssh % tokens such as %C work). ControlMaster and
	// ControlPersist are the caller's business.
	ControlPath string
}

// BaseArgs returns the ssh options every crabbox ssh use shares, without
// the program name and destination:
//
//	-o ForwardAgent=no -o ForwardX11=no -o ForwardX11Trusted=no
//	-o BatchMode=yes -o ConnectTimeout=N -o ConnectionAttempts=N
//	-o ServerAliveInterval=15 -o ServerAliveCountMax=2 -p <port>
//	-o StrictHostKeyChecking=accept-new|yes -o UserKnownHostsFile=<file>
//	[-o IdentityFile=<key> -o IdentitiesOnly=yes] [-o ControlPath=<p>] [-o ProxyCommand=<cmd>] -o LogLevel=ERROR
//
// Proxy targets (Coder) authenticate in the proxy and pass no identity;
// direct targets (SSH hosts) may name one key.
// LogLevel=ERROR hides the "Permanently added ... to the list of known
// hosts" notice.
//
// ssh reads each -o as a config line, so the known_hosts path is escaped for
// ssh: % is doubled and a path holding spaces or quotes is double-quoted
// (macOS config dirs live under "Application Support"). An empty
// KnownHostsFile renders as "none" so ~/.ssh/known_hosts is never used;
// Session refuses such targets. In the ProxyCommand, which ssh hands to a
// shell verbatim, only % is doubled (ssh would expand %h, %p, ...).
func BaseArgs(t lease.Target, o Options) []string {
	timeout, attempts := o.ConnectTimeout, o.ConnectionAttempts
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	if attempts <= 0 {
		attempts = DefaultConnectionAttempts
	}
	known := "none"
	strict := "accept-new"
	if t.StrictHostKeys {
		strict = "yes"
	}
	if t.KnownHostsFile != "" {
		known = configPath(t.KnownHostsFile)
	}
	args := []string{
		"-o", "ForwardAgent=no",
		"-o", "ForwardX11=no",
		"-o", "ForwardX11Trusted=no",
		"-o", "BatchMode=yes",
		"-o", "ConnectTimeout=" + strconv.Itoa(timeout),
		"-o", "ConnectionAttempts=" + strconv.Itoa(attempts),
		"-o", "ServerAliveInterval=15",
		"-o", "ServerAliveCountMax=2",
		"-p", strconv.Itoa(port(t)),
		"-o", "StrictHostKeyChecking=" + strict,
		"-o", "UserKnownHostsFile=" + known,
	}
	if t.IdentityFile != "" {
		args = append(args, "-o", "IdentityFile="+configPath(t.IdentityFile), "-o", "IdentitiesOnly=yes")
	}
	if o.ControlPath != "" {
		args = append(args, "-o", "ControlPath="+o.ControlPath)
	}
	if t.ProxyCommand != "" {
		args = append(args, "-o", "ProxyCommand="+strings.ReplaceAll(t.ProxyCommand, "%", "%%"))
	}
	return append(args, "-o", "LogLevel=ERROR")
}

// Destination is the ssh destination user@host (just host without a user).
func Destination(t lease.Target) string {
	if t.User == "" {
		return t.Host
	}
	return t.User + "@" + t.Host
}

// PasteLine is the ready-to-paste interactive ssh command of `crabbox ssh`
// (docs/providers/coder.md, SSH): ssh, BaseArgs (connect timeout 10, 3
// attempts), a shared control master (ControlMaster=auto, ControlPersist=10m,
// ControlPath=/tmp/crabbox-ssh-<8 hex>-%C) and the destination, every word
// single-quoted. The known_hosts directory must exist for ssh to record the
// host key; see EnsureKnownHostsDir.
func PasteLine(t lease.Target) string {
	args := []string{"ssh"}
	args = append(args, BaseArgs(t, Options{ConnectTimeout: 10, ConnectionAttempts: 3})...)
	args = append(args,
		"-o", "ControlMaster=auto",
		"-o", "ControlPersist=10m",
		"-o", "ControlPath=/tmp/crabbox-ssh-"+controlHash(t)+"-%C",
		Destination(t))
	return QuoteArgs(args)
}

// controlHash is 8 hex of SHA-1(user NUL known_hosts NUL host NUL proxy).
func controlHash(t lease.Target) string {
	sum := sha1.Sum([]byte(strings.Join([]string{t.User, t.KnownHostsFile, t.Host, t.ProxyCommand}, "\x00")))
	return hex.EncodeToString(sum[:4])
}

// EnsureKnownHostsDir creates the directory of t.KnownHostsFile with mode
// 0700 (and tightens it to 0700 when it already exists).
func EnsureKnownHostsDir(t lease.Target) error {
	if t.KnownHostsFile == "" {
		return fmt.Errorf("ssh target %s has no known_hosts file", t.Host)
	}
	dir := filepath.Dir(t.KnownHostsFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating known_hosts dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("securing known_hosts dir: %w", err)
	}
	return nil
}

func port(t lease.Target) int {
	if t.Port <= 0 {
		return defaultPort
	}
	return t.Port
}

// configPath renders a file path as an ssh config value: % doubled (ssh
// expands % tokens in UserKnownHostsFile and ControlPath) and, when needed,
// double-quoted with \ and " escaped (ssh splits config values on blanks
// and understands "..." with \\ \" escapes).
func configPath(p string) string {
	p = strings.ReplaceAll(p, "%", "%%")
	if p != "" && !strings.ContainsAny(p, " \t\"'\\#") {
		return p
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(p) + `"`
}

// rsyncQuote quotes one word for rsync's -e parser, which splits on spaces
// and understands single and double quotes but not backslashes: inside
// single quotes a single quote is written doubled. Plain words stay bare.
func rsyncQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
