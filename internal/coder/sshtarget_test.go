package coder

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestProxyCommand(t *testing.T) {
	got := ProxyCommand("/opt/Coder CLI/coder", "yes", "crabbox-blue")
	want := `'/opt/Coder CLI/coder' ssh --stdio --disable-autostart --wait 'yes' 'crabbox-blue'`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	for _, part := range []string{"'/opt/Coder CLI/coder'", "ssh", "--stdio", "--disable-autostart", "--wait", "'yes'", "'crabbox-blue'"} {
		if !strings.Contains(got, part) {
			t.Errorf("missing %s", part)
		}
	}
	if got := ProxyCommand("", "", "alice/shared"); got != `'coder' ssh --stdio --disable-autostart --wait 'yes' 'alice/shared'` {
		t.Errorf("defaults: %s", got)
	}
	if got := ProxyCommand("coder", " NO ", "x"); got != `'coder' ssh --stdio --disable-autostart --wait 'no' 'x'` {
		t.Errorf("wait: %s", got)
	}
	if got := ProxyCommand("/it's/coder", "auto", "x"); got != `'/it'\''s/coder' ssh --stdio --disable-autostart --wait 'auto' 'x'` {
		t.Errorf("quote: %s", got)
	}
	if got := ProxyCommand("/tmp/100%/coder", "yes", "x"); got != `'/tmp/100%/coder' ssh --stdio --disable-autostart --wait 'yes' 'x'` {
		t.Errorf("percent: %s", got)
	}
	for _, tok := range []string{"token", "session"} {
		if strings.Contains(strings.ToLower(got), tok) {
			t.Errorf("proxy mentions %s", tok)
		}
	}
}

func TestHostAlias(t *testing.T) {
	if got := HostAlias("crabbox-blue"); got != "crabbox-blue" {
		t.Errorf("bare: %q", got)
	}
	if got := HostAlias(""); got != "coder-workspace" {
		t.Errorf("empty: %q", got)
	}
	re := regexp.MustCompile(`^coder-alice-shared-[0-9a-f]{6}$`)
	alice := HostAlias("alice/shared")
	if !re.MatchString(alice) || alice != "coder-alice-shared-"+sha6("alice/shared") {
		t.Errorf("alice: %q", alice)
	}
	bob := HostAlias("bob/shared")
	if bob == alice || !strings.HasPrefix(bob, "coder-bob-shared-") {
		t.Errorf("bob: %q alice: %q", bob, alice)
	}
	long := HostAlias(strings.Repeat("o", 40) + "/" + strings.Repeat("n", 40))
	if len(long) > 63 || !regexp.MustCompile(`^coder-o+-n+-[0-9a-f]{6}$`).MatchString(long) {
		t.Errorf("long: %q (%d)", long, len(long))
	}
	if got := HostAlias("!!!/???"); !regexp.MustCompile(`^coder-[0-9a-f]{6}$`).MatchString(got) {
		t.Errorf("nothing left: %q", got)
	}
	if got := HostAlias("-oProxyCommand=evil"); strings.HasPrefix(got, "-") || !strings.HasPrefix(got, "coder-") {
		t.Errorf("flag-like bare ref: %q", got)
	}
}

func TestKnownHostsFile(t *testing.T) {
	dir := filepath.Join("/home/alice/.config", "crabbox")
	a := KnownHostsFile(dir, "crabbox-blue", "ws1")
	b := KnownHostsFile(dir, "crabbox-blue", "ws2")
	if a == b {
		t.Errorf("same file for different IDs: %s", a)
	}
	if a1, a2 := HostAlias("alice/crabbox-blue"), HostAlias("alice/crabbox-blue"); a1 != a2 {
		t.Errorf("alias not stable: %s, %s", a1, a2)
	}
	if want := filepath.Join(dir, "coder", "known_hosts.d", sha1Hex("crabbox-blue\x00ws1")[:12]); a != want {
		t.Errorf("got %s want %s", a, want)
	}
	if !strings.Contains(filepath.ToSlash(a), "crabbox/coder/known_hosts.d/") {
		t.Errorf("path %s", a)
	}
	if got := KnownHostsFile(dir, "crabbox-blue", ""); got != filepath.Join(dir, "coder", "known_hosts.d", sha1Hex("crabbox-blue\x00crabbox-blue")[:12]) {
		t.Errorf("no id: %s", got)
	}
	if KnownHostsFile(dir, "alice/shared", "ws1") == KnownHostsFile(dir, "bob/shared", "ws1") {
		t.Error("refs share a file")
	}
}

func TestReadyCheck(t *testing.T) {
	for _, tool := range []string{"git", "rsync", "tar"} {
		if !strings.Contains(ReadyCheck, "command -v "+tool+" >/dev/null") {
			t.Errorf("ready check misses %s", tool)
		}
	}
}
