package sshx

import (
	"errors"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
)

// changedDiag is OpenSSH 9's stderr for a changed host key (LogLevel=ERROR).
const changedDiag = `@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
It is also possible that a host key has just been changed.
The fingerprint for the ED25519 key sent by the remote host is
SHA256:5VYpvvYzRPDOBhMI6AorucXhsEnDj7VTjGfAbGuK9hQ.
Please contact your system administrator.
Add correct host key in /tmp/hk/kh to get rid of this message.
Offending ED25519 key in /tmp/hk/kh:1
  remove with:
  ssh-keygen -f "/tmp/hk/kh" -R "[127.0.0.1]:22911"
Host key for [127.0.0.1]:22911 has changed and you have requested strict checking.
Host key verification failed.
`

const unknownDiag = `No ED25519 host key is known for [127.0.0.1]:22911 and you have requested strict checking.
Host key verification failed.
`

func TestParseHostKeyProblem(t *testing.T) {
	tests := []struct {
		name             string
		diag             string
		changed, unknown bool
		keyType, fp      string
	}{
		{"changed", changedDiag, true, false, "ED25519", "SHA256:5VYpvvYzRPDOBhMI6AorucXhsEnDj7VTjGfAbGuK9hQ"},
		{"unknown strict", unknownDiag, false, true, "", ""},
		{"refused", "ssh: connect to host 127.0.0.1 port 22: Connection refused\n", false, false, "", ""},
		{"auth", "root@127.0.0.1: Permission denied (publickey).\n", false, false, "", ""},
		{"empty", "", false, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, u, kt, fp := ParseHostKeyProblem(tt.diag)
			if c != tt.changed || u != tt.unknown || kt != tt.keyType || fp != tt.fp {
				t.Fatalf("= %v %v %q %q, want %v %v %q %q", c, u, kt, fp, tt.changed, tt.unknown, tt.keyType, tt.fp)
			}
		})
	}
}

func TestTransportErrorClassifiesHostKeys(t *testing.T) {
	tofu := lease.Target{Host: "127.0.0.1", Port: 22911, KnownHostsFile: "/cfg/ssh/known_hosts.d/127.0.0.1-22911"}
	strict := tofu
	strict.StrictHostKeys, strict.KnownHostsFile = true, "/etc/crabbox/known_hosts"

	err := transportError(tofu, "Host key verification failed.", changedDiag)
	he := AsHostKeyError(err)
	if he == nil || exitcode.Code(err) != exitcode.Transport || !he.Changed {
		t.Fatalf("changed key: %v (exit %d)", err, exitcode.Code(err))
	}
	for _, want := range []string{"[127.0.0.1]:22911", "SHA256:5VYpvvYzRPDOBhMI6AorucXhsEnDj7VTjGfAbGuK9hQ", "ED25519",
		"remove /cfg/ssh/known_hosts.d/127.0.0.1-22911 and rerun", "sent nothing"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}

	err = transportError(strict, "x", changedDiag)
	if he := AsHostKeyError(err); he == nil || !he.Strict || !strings.Contains(err.Error(), "ssh-keygen -f '/etc/crabbox/known_hosts' -R '[127.0.0.1]:22911'") {
		t.Fatalf("strict changed: %v", err)
	}
	if strings.Contains(err.Error(), "remove /etc/crabbox/known_hosts") {
		t.Errorf("a user's known_hosts file must not be removed whole: %v", err)
	}

	err = transportError(strict, "x", unknownDiag)
	if he := AsHostKeyError(err); he == nil || he.Changed || !strings.Contains(err.Error(), "is not in /etc/crabbox/known_hosts") {
		t.Fatalf("strict unknown: %v", err)
	}

	err = transportError(tofu, "Connection refused", "ssh: connect to host 127.0.0.1 port 22911: Connection refused\n")
	var te *TransportError
	if AsHostKeyError(err) != nil || !errors.As(err, &te) || exitcode.Code(err) != exitcode.Transport ||
		err.Error() != "ssh transport to 127.0.0.1 failed: Connection refused" || !strings.Contains(te.Diagnostics, "port 22911") {
		t.Fatalf("plain transport error: %v", err)
	}
	// Port 22 is named without brackets.
	t22 := tofu
	t22.Port = 22
	if err := transportError(t22, "x", changedDiag); !strings.Contains(err.Error(), "host key of 127.0.0.1 has changed") {
		t.Errorf("port 22: %v", err)
	}
}
