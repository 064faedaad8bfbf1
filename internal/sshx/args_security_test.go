package sshx

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/lease"
)

// TestSSHArgvNeverUsesUserKnownHosts: every ssh argv crabbox builds
// (BaseArgs, PasteLine, Session.Args, the rsync -e string) pins
// UserKnownHostsFile to the target's own file, never names ~/.ssh, and
// turns agent and X11 forwarding off; hostile target fields do not change
// that.
func TestSSHArgvNeverUsesUserKnownHosts(t *testing.T) {
	cfg := t.TempDir()
	targets := []lease.Target{
		{User: "coder", Host: "coder-ws", KnownHostsFile: filepath.Join(cfg, "coder", "known_hosts.d", "0123456789ab"),
			ProxyCommand: `'coder' ssh --stdio --wait 'yes' 'alice/ws'`},
		{User: "coder", Host: "h", Port: 2222, KnownHostsFile: filepath.Join(cfg, "Application Support", "kh \"q\" 'x' 100%")},
		{User: "-oForwardAgent=yes", Host: "-oUserKnownHostsFile=~/.ssh/known_hosts",
			KnownHostsFile: filepath.Join(cfg, "k"), ProxyCommand: "x -o ForwardAgent=yes; cat ~/.ssh/id_rsa"},
		{User: "coder", Host: "h\nForwardAgent yes", KnownHostsFile: filepath.Join(cfg, "new\nline")},
		{User: "coder", Host: "no-file"}, // no known_hosts file: "none", never the default
	}
	for _, tg := range targets {
		check := func(what string, argv []string) {
			t.Helper()
			opts := map[string][]string{}
			for i := 0; i+1 < len(argv); i++ {
				if argv[i] == "-o" {
					k, v, _ := strings.Cut(argv[i+1], "=")
					opts[k] = append(opts[k], v)
					i++
				}
			}
			want := "none"
			if tg.KnownHostsFile != "" {
				want = configPath(tg.KnownHostsFile)
			}
			if got := opts["UserKnownHostsFile"]; len(got) == 0 || got[0] != want {
				t.Errorf("%s %q: UserKnownHostsFile %q, want first %q", what, tg.Host, got, want)
			}
			for _, kv := range [][2]string{{"ForwardAgent", "no"}, {"ForwardX11", "no"}, {"ForwardX11Trusted", "no"}, {"BatchMode", "yes"}, {"StrictHostKeyChecking", "accept-new"}} {
				if got := opts[kv[0]]; len(got) == 0 || got[0] != kv[1] {
					t.Errorf("%s %q: %s %q, want first %q", what, tg.Host, kv[0], got, kv[1])
				}
			}
			for _, a := range argv {
				if a == tg.ProxyCommand || a == Destination(tg) || a == "-o" {
					continue
				}
				if strings.HasPrefix(a, "ProxyCommand=") {
					continue // the caller's proxy, passed through as one word
				}
				if strings.Contains(a, "~/.ssh") || strings.Contains(a, "/.ssh/") {
					t.Errorf("%s %q: argv word %q references ~/.ssh", what, tg.Host, a)
				}
			}
			// An option word can never be smuggled in through a field:
			// -o values are whole words and the destination comes last.
			for i, a := range argv {
				if strings.HasPrefix(a, "-") && a != "-o" && a != "-p" && i > 0 && argv[i-1] != "-o" && argv[i-1] != "-p" && a != Destination(tg) {
					t.Errorf("%s %q: unexpected option word %q", what, tg.Host, a)
				}
			}
		}
		check("BaseArgs", BaseArgs(tg, Options{}))
		check("BaseArgs+ControlPath", BaseArgs(tg, Options{ControlPath: "/tmp/x/%C"}))
		words, err := Split(PasteLine(tg))
		if err != nil {
			t.Fatalf("PasteLine does not split: %v", err)
		}
		if words[0] != "ssh" || words[len(words)-1] != Destination(tg) {
			t.Errorf("PasteLine words %q", words)
		}
		check("PasteLine", words[1:len(words)-1])
		s := NewSession(execx.NewFake(), tg, SessionOptions{TempDir: t.TempDir()})
		check("Session.Args", s.Args())
		rsh := strings.ReplaceAll(s.RSH(), rsyncQuote("ProxyCommand="+strings.ReplaceAll(tg.ProxyCommand, "%", "%%")), "")
		if !strings.Contains(rsh, "ForwardAgent=no") || strings.Contains(rsh, "/.ssh/") || strings.Contains(rsh, "~/.ssh") {
			t.Errorf("RSH %q", s.RSH())
		}
	}
}

// TestEnsureKnownHostsDirMode: the known_hosts dir is created 0700 and an
// existing looser one is tightened.
func TestEnsureKnownHostsDirMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "known_hosts.d")
	tg := lease.Target{Host: "h", KnownHostsFile: filepath.Join(dir, "f")}
	if err := EnsureKnownHostsDir(tg); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := EnsureKnownHostsDir(tg); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("mode %v %v, want 0700", st.Mode().Perm(), err)
	}
	if err := EnsureKnownHostsDir(lease.Target{Host: "h"}); err == nil {
		t.Error("no known_hosts file accepted")
	}
}
