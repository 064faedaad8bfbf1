package sshx

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/lease"
)

func coderTarget() lease.Target {
	return lease.Target{
		User:           "coder",
		Host:           "coder-alice-crabbox-blue-lobster-8d41ce-3f9a0b",
		Port:           22,
		ProxyCommand:   `'coder' ssh --stdio --wait 'yes' 'alice/crabbox-blue-lobster-8d41ce'`,
		KnownHostsFile: "/home/alice/.config/crabbox/coder/known_hosts.d/5b1f0c2a9e7d",
		ReadyCheck:     "command -v git >/dev/null && command -v rsync >/dev/null && command -v tar >/dev/null",
		WorkRoot:       "/home/coder/crabbox",
	}
}

func TestBaseArgs(t *testing.T) {
	tg := coderTarget()
	tests := []struct {
		name string
		t    lease.Target
		o    Options
		want []string
	}{
		{"coder defaults", tg, Options{}, []string{
			"-o", "ForwardAgent=no", "-o", "ForwardX11=no", "-o", "ForwardX11Trusted=no",
			"-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ConnectionAttempts=3",
			"-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=2", "-p", "22",
			"-o", "StrictHostKeyChecking=accept-new",
			"-o", "UserKnownHostsFile=/home/alice/.config/crabbox/coder/known_hosts.d/5b1f0c2a9e7d",
			"-o", "ProxyCommand='coder' ssh --stdio --wait 'yes' 'alice/crabbox-blue-lobster-8d41ce'",
			"-o", "LogLevel=ERROR",
		}},
		{"options", tg, Options{ConnectTimeout: 5, ConnectionAttempts: 1, ControlPath: "/tmp/c-%C"}, []string{
			"-o", "ForwardAgent=no", "-o", "ForwardX11=no", "-o", "ForwardX11Trusted=no",
			"-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "ConnectionAttempts=1",
			"-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=2", "-p", "22",
			"-o", "StrictHostKeyChecking=accept-new",
			"-o", "UserKnownHostsFile=/home/alice/.config/crabbox/coder/known_hosts.d/5b1f0c2a9e7d",
			"-o", "ControlPath=/tmp/c-%C",
			"-o", "ProxyCommand='coder' ssh --stdio --wait 'yes' 'alice/crabbox-blue-lobster-8d41ce'",
			"-o", "LogLevel=ERROR",
		}},
		{"direct, odd paths", lease.Target{User: "u", Host: "h", Port: 2222, KnownHostsFile: `/Users/a/Library/Application Support/crabbox/k%h"q`}, Options{}, []string{
			"-o", "ForwardAgent=no", "-o", "ForwardX11=no", "-o", "ForwardX11Trusted=no",
			"-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ConnectionAttempts=3",
			"-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=2", "-p", "2222",
			"-o", "StrictHostKeyChecking=accept-new",
			"-o", `UserKnownHostsFile="/Users/a/Library/Application Support/crabbox/k%%h\"q"`,
			"-o", "LogLevel=ERROR",
		}},
		{"no known_hosts, no port", lease.Target{Host: "h", ProxyCommand: "nc %h 22"}, Options{}, []string{
			"-o", "ForwardAgent=no", "-o", "ForwardX11=no", "-o", "ForwardX11Trusted=no",
			"-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ConnectionAttempts=3",
			"-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=2", "-p", "22",
			"-o", "StrictHostKeyChecking=accept-new",
			"-o", "UserKnownHostsFile=none",
			"-o", "ProxyCommand=nc %%h 22",
			"-o", "LogLevel=ERROR",
		}},
	}
	for _, tc := range tests {
		if got := BaseArgs(tc.t, tc.o); !slices.Equal(got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
	if got := Destination(tg); got != "coder@coder-alice-crabbox-blue-lobster-8d41ce-3f9a0b" {
		t.Errorf("Destination = %q", got)
	}
	if got := Destination(lease.Target{Host: "h"}); got != "h" {
		t.Errorf("Destination without user = %q", got)
	}
}

func TestPasteLine(t *testing.T) {
	tg := coderTarget()
	want := `'ssh' '-o' 'ForwardAgent=no' '-o' 'ForwardX11=no' '-o' 'ForwardX11Trusted=no' '-o' 'BatchMode=yes' ` +
		`'-o' 'ConnectTimeout=10' '-o' 'ConnectionAttempts=3' '-o' 'ServerAliveInterval=15' '-o' 'ServerAliveCountMax=2' ` +
		`'-p' '22' '-o' 'StrictHostKeyChecking=accept-new' ` +
		`'-o' 'UserKnownHostsFile=/home/alice/.config/crabbox/coder/known_hosts.d/5b1f0c2a9e7d' ` +
		`'-o' 'ProxyCommand='\''coder'\'' ssh --stdio --wait '\''yes'\'' '\''alice/crabbox-blue-lobster-8d41ce'\''' ` +
		`'-o' 'LogLevel=ERROR' ` +
		`'-o' 'ControlMaster=auto' '-o' 'ControlPersist=10m' '-o' 'ControlPath=/tmp/crabbox-ssh-` + controlHash(tg) + `-%C' ` +
		`'coder@coder-alice-crabbox-blue-lobster-8d41ce-3f9a0b'`
	if got := PasteLine(tg); got != want {
		t.Errorf("PasteLine\n got %s\nwant %s", got, want)
	}
	if h := controlHash(tg); len(h) != 8 || strings.Trim(h, "0123456789abcdef") != "" {
		t.Errorf("controlHash = %q", h)
	}
	other := tg
	other.KnownHostsFile += "x"
	if controlHash(other) == controlHash(tg) {
		t.Error("controlHash ignores the known_hosts file")
	}
	// The line pastes into a shell as the intended argv.
	words, err := Split(PasteLine(tg))
	if err != nil {
		t.Fatal(err)
	}
	if words[0] != "ssh" || words[len(words)-1] != Destination(tg) || !slices.Contains(words, "ProxyCommand="+tg.ProxyCommand) {
		t.Errorf("pasted words = %q", words)
	}
}

// TestArgsWithRealSSH has ssh -G (which parses options without connecting)
// read BaseArgs and PasteLine, so quoting of awkward paths is checked
// against OpenSSH itself.
func TestArgsWithRealSSH(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Fatal("ssh (openssh-client) is required")
	}
	known := filepath.Join(t.TempDir(), `Application Support`, `kh %h "q" it's\x`)
	tg := lease.Target{User: "coder", Host: "alias", Port: 22, KnownHostsFile: known,
		ProxyCommand: `'/opt/my coder/coder' ssh --stdio --wait 'yes' 'o/w' # 100%`}
	args := append([]string{"-G", "-F", "none"}, BaseArgs(tg, Options{ControlPath: "/tmp/x-%C"})...)
	out, err := exec.Command("ssh", append(args, Destination(tg))...).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh -G: %v\n%s", err, out)
	}
	conf := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(l, " ")
		conf[k] = v
	}
	for k, want := range map[string]string{
		"userknownhostsfile":    known,
		"proxycommand":          strings.ReplaceAll(tg.ProxyCommand, "%", "%%"), // -G prints it unexpanded
		"forwardagent":          "no",
		"forwardx11":            "no",
		"forwardx11trusted":     "no",
		"batchmode":             "yes",
		"stricthostkeychecking": "accept-new",
		"loglevel":              "ERROR",
		"user":                  "coder",
		"port":                  "22",
	} {
		if conf[k] != want {
			t.Errorf("ssh -G %s = %q, want %q", k, conf[k], want)
		}
	}
	if !strings.HasPrefix(conf["controlpath"], "/tmp/x-") || len(conf["controlpath"]) != len("/tmp/x-")+40 {
		t.Errorf("ssh -G controlpath = %q", conf["controlpath"])
	}
	// The paste line, run by bash, gives ssh the same options.
	line := strings.Replace(PasteLine(tg), "'ssh'", "'ssh' '-G' '-F' 'none'", 1)
	out, err = exec.Command("bash", "-c", line).CombinedOutput()
	if err != nil {
		t.Fatalf("bash -c paste line: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "\nuserknownhostsfile "+known+"\n") || !strings.Contains(string(out), "\ncontrolmaster auto\n") {
		t.Errorf("paste line config:\n%s", out)
	}
}

func TestEnsureKnownHostsDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "crabbox", "coder", "known_hosts.d")
	tg := lease.Target{Host: "h", KnownHostsFile: filepath.Join(dir, "abc")}
	if err := EnsureKnownHostsDir(tg); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := EnsureKnownHostsDir(tg); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("known_hosts dir mode = %v, %v", fi.Mode(), err)
	}
	if err := EnsureKnownHostsDir(lease.Target{Host: "h"}); err == nil {
		t.Error("no error for a target without known_hosts file")
	}
}
