package sshx

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
)

// TransportError is a failure of ssh itself (connecting, the host key,
// authentication, a dropped tunnel), not of the remote command. Session
// returns it wrapped with exit code 7 (exitcode.Transport).
type TransportError struct {
	Host string
	// Detail is the message: the last lines of ssh's diagnostics.
	Detail string
	// Diagnostics is ssh's stderr (and the proxy's), tail-capped to a few
	// KiB: what Detail was cut from.
	Diagnostics string
}

func (e *TransportError) Error() string {
	return "ssh transport to " + e.Host + " failed: " + e.Detail
}

// HostKeyError is ssh refusing a host's key: the key differs from the one
// recorded in the target's known_hosts file (Changed), or, with strict
// host keys, no key is recorded there at all. Nothing was sent to the host.
// Session returns it (wrapped with exit code 7) instead of a plain
// TransportError, so every command names the real file and the next step.
type HostKeyError struct {
	Host string // the target's host
	Port int
	// KnownHostsFile is the file ssh checked.
	KnownHostsFile string
	// Strict is true when the file is the user's (StrictHostKeyChecking=yes);
	// otherwise it is crabbox's own per-target file (trust on first use).
	Strict bool
	// Changed: a different key is recorded; false: none is (strict only).
	Changed bool
	// KeyType and Fingerprint describe the key the host offered now, when
	// ssh printed them ("ED25519", "SHA256:...").
	KeyType, Fingerprint string
	// Diagnostics is ssh's own message.
	Diagnostics string
}

// hostPort is how known_hosts names the host: [host]:port unless port 22.
func (e *HostKeyError) hostPort() string {
	if e.Port == 0 || e.Port == defaultPort {
		return e.Host
	}
	return "[" + e.Host + "]:" + strconv.Itoa(e.Port)
}

func (e *HostKeyError) offered() string {
	switch {
	case e.Fingerprint != "" && e.KeyType != "":
		return fmt.Sprintf(" (the host now offers %s key %s)", e.KeyType, e.Fingerprint)
	case e.Fingerprint != "":
		return fmt.Sprintf(" (the host now offers key %s)", e.Fingerprint)
	}
	return ""
}

func (e *HostKeyError) Error() string {
	hp := e.hostPort()
	remove := fmt.Sprintf("ssh-keygen -f %s -R %s", Quote(e.KnownHostsFile), Quote(hp))
	switch {
	case e.Changed && e.Strict:
		return fmt.Sprintf("host key of %s has changed%s and does not match %s; crabbox refused to connect and sent nothing. "+
			"If the host was reinstalled, check the new fingerprint with its administrator, replace its key in %s (`%s`, then add the new one) and rerun; otherwise someone may be intercepting the connection",
			hp, e.offered(), e.KnownHostsFile, e.KnownHostsFile, remove)
	case e.Changed:
		return fmt.Sprintf("host key of %s has changed%s since crabbox first recorded it in %s; crabbox refused to connect and sent nothing. "+
			"If the host was reinstalled, check the new fingerprint, remove %s and rerun (the new key is then recorded); otherwise someone may be intercepting the connection",
			hp, e.offered(), e.KnownHostsFile, e.KnownHostsFile)
	}
	return fmt.Sprintf("host key of %s is not in %s (strict host key checking: that file was given as the host's known_hosts); crabbox refused to connect and sent nothing. "+
		"Add the host's key to %s (e.g. `ssh-keyscan -p %d %s >> %s`, after checking its fingerprint) and rerun",
		hp, e.KnownHostsFile, e.KnownHostsFile, port(lease.Target{Port: e.Port}), Quote(e.Host), Quote(e.KnownHostsFile))
}

var (
	changedRe     = regexp.MustCompile(`REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for \S+ has changed`)
	unknownRe     = regexp.MustCompile(`No \S+ host key is known for \S+ and you have requested strict checking`)
	fingerprintRe = regexp.MustCompile(`The fingerprint for the (\S+) key sent by the remote host is\s+(SHA256:[A-Za-z0-9+/=]+)`)
)

// ParseHostKeyProblem reads ssh's diagnostics: changed is true for a
// changed host key, unknown for a missing one under strict checking;
// keyType and fingerprint are those of the key the host offered, when ssh
// printed them.
func ParseHostKeyProblem(diag string) (changed, unknown bool, keyType, fingerprint string) {
	changed = changedRe.MatchString(diag)
	unknown = !changed && unknownRe.MatchString(diag)
	if m := fingerprintRe.FindStringSubmatch(diag); m != nil {
		keyType, fingerprint = m[1], strings.TrimSuffix(m[2], ".")
	}
	return changed, unknown, keyType, fingerprint
}

// transportError is the error of a failed ssh: a HostKeyError when ssh
// refused the host key, else a TransportError (both exit code 7).
func transportError(t lease.Target, detail, diag string) error {
	if changed, unknown, kt, fp := ParseHostKeyProblem(diag); changed || unknown {
		return exitcode.New(exitcode.Transport, &HostKeyError{
			Host: t.Host, Port: port(t), KnownHostsFile: t.KnownHostsFile, Strict: t.StrictHostKeys,
			Changed: changed, KeyType: kt, Fingerprint: fp, Diagnostics: strings.TrimSpace(diag),
		})
	}
	return exitcode.New(exitcode.Transport, &TransportError{Host: t.Host, Detail: detail, Diagnostics: diag})
}

// AsHostKeyError returns the HostKeyError in err's chain, or nil.
func AsHostKeyError(err error) *HostKeyError {
	var he *HostKeyError
	if errors.As(err, &he) {
		return he
	}
	return nil
}
