package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

func TestSSHHostsLayers(t *testing.T) {
	f := newFixture(t)
	user := f.writeUser(`provider: ssh
ssh:
  identityFile: ~/.ssh/crabbox
  hosts:
    - alice@build1.example.com
    - bob@10.0.0.7:2222
    - name: gpu
      host: gpu.internal
      user: ci
      port: 2200
      identityFile: ~/keys/gpu
      knownHostsFile: /etc/crabbox/known_hosts
      workRoot: /srv/crabbox/
    - "[::1]:2022"
`)
	c := f.mustLoad(nil)
	want := []SSHHost{
		{Name: "build1.example.com", Host: "build1.example.com", User: "alice", Port: 22},
		{Name: "10.0.0.7:2222", Host: "10.0.0.7", User: "bob", Port: 2222},
		{Name: "gpu", Host: "gpu.internal", User: "ci", Port: 2200, IdentityFile: f.home + "/keys/gpu",
			KnownHostsFile: "/etc/crabbox/known_hosts", WorkRoot: "/srv/crabbox"},
		{Name: "[::1]:2022", Host: "::1", Port: 2022},
	}
	if !reflect.DeepEqual(c.SSH.Hosts, want) {
		t.Fatalf("hosts:\n got %+v\nwant %+v", c.SSH.Hosts, want)
	}
	if s := setting(t, c, "ssh.hosts"); s.Source != SourceUser || s.File != user ||
		!strings.Contains(s.Value, "alice@build1.example.com:22") || !strings.Contains(s.Value, "gpu=ci@gpu.internal:2200 identityFile=") {
		t.Errorf("setting %+v", s)
	}
	if c.SSH.IdentityFile != f.home+"/.ssh/crabbox" || c.SSH.WorkRoot != DefaultSSHWorkRoot || setting(t, c, "workRoot").Value != DefaultSSHWorkRoot {
		t.Errorf("identity %q workRoot %q generic %q", c.SSH.IdentityFile, c.SSH.WorkRoot, setting(t, c, "workRoot").Value)
	}

	// env replaces the list; the flag replaces env; none clears.
	f.env["CRABBOX_SSH_HOSTS"] = "u@a, b:2200"
	c = f.mustLoad(nil)
	if len(c.SSH.Hosts) != 2 || c.SSH.Hosts[0].Endpoint() != "u@a:22" || c.SSH.Hosts[1].Name != "b:2200" || c.Source("ssh.hosts") != SourceEnv {
		t.Errorf("env hosts %+v", c.SSH.Hosts)
	}
	c = f.mustLoad(map[string]string{"ssh-host": "x@c,y@d:23", "ssh-work-root": "/srv/w", "ssh-clean-workdir": "true"})
	if len(c.SSH.Hosts) != 2 || c.SSH.Hosts[1].Endpoint() != "y@d:23" || c.Source("ssh.hosts") != SourceFlag ||
		c.SSH.WorkRoot != "/srv/w" || setting(t, c, "workRoot").Value != "/srv/w" || !c.SSH.CleanWorkdir {
		t.Errorf("flag: %+v workRoot %q", c.SSH, setting(t, c, "workRoot").Value)
	}
	f.env["CRABBOX_SSH_HOSTS"] = "none"
	if c = f.mustLoad(nil); len(c.SSH.Hosts) != 0 {
		t.Errorf("none: %+v", c.SSH.Hosts)
	}

	// A non-default generic work root fills an unset ssh.workRoot.
	f.env["CRABBOX_WORK_ROOT"] = "/data/cbx"
	if c = f.mustLoad(nil); c.SSH.WorkRoot != "/data/cbx" || setting(t, c, "workRoot").Value != "/data/cbx" {
		t.Errorf("generic work root: ssh %q generic %q", c.SSH.WorkRoot, setting(t, c, "workRoot").Value)
	}
	f.env["CRABBOX_SSH_WORK_ROOT"] = "/data/ssh"
	if c = f.mustLoad(nil); c.SSH.WorkRoot != "/data/ssh" || setting(t, c, "workRoot").Value != "/data/ssh" {
		t.Errorf("explicit ssh work root: ssh %q generic %q", c.SSH.WorkRoot, setting(t, c, "workRoot").Value)
	}
}

func TestSSHProviderLinuxOnly(t *testing.T) {
	f := newFixture(t)
	_, err := f.load(map[string]string{"provider": "ssh", "target": "macos"})
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), `--target must be linux, the only target crabbox supports (got "macos")`) {
		t.Fatalf("got %v", err)
	}
}

// TestSSHHostsHostile: values that ssh could read as an option, or that
// would break a command line or a remote shell word, are refused with
// exit 2 from every layer.
func TestSSHHostsHostile(t *testing.T) {
	bad := []string{
		"-oProxyCommand=touch /tmp/x",
		"u@-oProxyCommand=x",
		"-u@host",
		"u@host name",
		"u@ho\tst",
		"u@host\nProxyCommand x",
		"u@host:0",
		"u@host:65536",
		"u@host:22x",
		"u@host:",
		"@host",
		"u@",
		"u@[::1",
		"u@[::1]x",
		"u@ho$t",
		"u@host;id",
		"u@`id`",
		"u@h%p",
		"u@h/x",
		"u@..",
		"u@.host",
		"me$(id)@host",
		"u@" + strings.Repeat("a", 300),
		"u@1.2.3.4:22,u@1.2.3.4:22", // twice
		"u@h,u@H",                   // same name (case-insensitive)
	}
	for _, in := range bad {
		for _, layer := range []string{"flag", "env", "yaml"} {
			f := newFixture(t)
			var flags map[string]string
			switch layer {
			case "flag":
				flags = map[string]string{"ssh-host": in}
			case "env":
				f.env["CRABBOX_SSH_HOSTS"] = in
			case "yaml":
				if strings.ContainsAny(in, "\n") {
					continue
				}
				f.writeRepo("crabbox.yaml", "ssh:\n  hosts: '"+strings.ReplaceAll(in, "'", "''")+"'\n")
			}
			c, err := f.load(flags)
			if exitcode.Code(err) != exitcode.Usage {
				t.Errorf("%s %.50q: got %v (hosts %+v), want exit-2 refusal", layer, in, err, hostsOf(c))
			}
		}
	}
	badMappings := []string{
		"- {host: h, name: '-x'}",
		"- {host: h, name: 'a b'}",
		"- {host: h, name: cbx_0123456789ab}",
		"- {host: h, name: 'a@b'}",
		"- {host: h, user: '-l'}",
		"- {host: h, port: 0}",
		"- {host: h, port: abc}",
		"- {host: '-h'}",
		"- {host: 'h\\0x'}",
		"- {host: h, identityFile: \"a\\nb\"}",
		"- {host: h, knownHostsFile: \"a\\0b\"}",
		"- {host: h, workRoot: relative}",
		"- {host: h, workRoot: /}",
		"- {host: h, workRoot: '/srv/a b'}",
		"- {host: h, workRoot: '/srv/$(id)'}",
		"- {host: h, identityfile: /k}", // typo: refused, not ignored
		"- {user: u}",                   // no host
		"- {host: [a, b]}",
		"- [a, b]",
		"- {host: h}\n- {host: h2, name: h}", // duplicate name
	}
	for _, in := range badMappings {
		f := newFixture(t)
		f.writeRepo("crabbox.yaml", "ssh:\n  hosts:\n"+indent(in, "    "))
		c, err := f.load(nil)
		if exitcode.Code(err) != exitcode.Usage {
			t.Errorf("yaml %q: got %v (hosts %+v), want exit-2 refusal", in, err, hostsOf(c))
		}
	}
	for _, kv := range [][2]string{
		{"CRABBOX_SSH_IDENTITY", "a\nb"},
		{"CRABBOX_SSH_KNOWN_HOSTS", "a\rb"},
		{"CRABBOX_SSH_WORK_ROOT", "/srv/a;b"},
		{"CRABBOX_SSH_WORK_ROOT", "/usr"},
		{"CRABBOX_SSH_WORK_ROOT", "tmp/x"},
	} {
		f := newFixture(t)
		f.env[kv[0]] = kv[1]
		if _, err := f.load(nil); exitcode.Code(err) != exitcode.Usage {
			t.Errorf("%s=%q: got %v, want exit-2 refusal", kv[0], kv[1], err)
		}
	}
}

// TestSSHKeysNeedTrust: hosts, keys, known_hosts, work roots and the
// clean-up switch from an untrusted repo file are ignored.
func TestSSHKeysNeedTrust(t *testing.T) {
	f := newFixture(t)
	f.writeRepo("crabbox.yaml", "ssh:\n  hosts: [evil@attacker.example]\n  identityFile: /k\n  knownHostsFile: /kh\n  workRoot: /srv/x\n  cleanWorkdir: true\n")
	c, err := Load(LoadOptions{Env: MapEnv(f.env), RepoRoot: f.repo})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.SSH.Hosts) != 0 || c.SSH.IdentityFile != "" || c.SSH.KnownHostsFile != "" || c.SSH.WorkRoot != DefaultSSHWorkRoot || c.SSH.CleanWorkdir {
		t.Errorf("untrusted repo keys applied: %+v", c.SSH)
	}
	if len(c.Ignored) != 5 {
		t.Errorf("ignored %+v", c.Ignored)
	}
}

func hostsOf(c *Config) []SSHHost {
	if c == nil {
		return nil
	}
	return c.SSH.Hosts
}

func indent(s, by string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = by + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}
