package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/trust"
)

// TestTrustRequiringKeys: exactly the keys that choose what runs locally,
// what leaves the machine or what is destroyed need trust.
func TestTrustRequiringKeys(t *testing.T) {
	want := map[string]bool{
		"workRoot": true, "coder.cliPath": true, "coder.workRoot": true,
		"coder.richParameterFile": true, "coder.deleteOnRelease": true, "env.allow": true,
		"ssh.hosts": true, "ssh.identityFile": true, "ssh.knownHostsFile": true, "ssh.workRoot": true, "ssh.cleanWorkdir": true,
	}
	for _, k := range Keys() {
		if k.NeedsTrust != want[k.Key] {
			t.Errorf("%s: NeedsTrust=%v, want %v", k.Key, k.NeedsTrust, want[k.Key])
		}
		delete(want, k.Key)
	}
	for k := range want {
		t.Errorf("key %s missing from the key table", k)
	}
}

// TestRepoTrust: trust-requiring keys from an untrusted repo file are
// ignored (named in Ignored and in one warning each, with the command that
// trusts the file); the same keys from the user file, env and flags apply;
// other repo keys apply; trusting the exact content applies them; an edit
// makes the file untrusted again; CRABBOX_TRUST_REPO_CONFIG=1 trusts all.
func TestRepoTrust(t *testing.T) {
	repoYAML := "coder:\n  cliPath: ./evil.sh\n  template: tpl\n  deleteOnRelease: true\n  workRoot: /tmp/x/work\nenv:\n  allow: [\"A*\", \"G*\"]\n"
	type want struct {
		cli, template string
		del           bool
		allow         string
		ignored       int
	}
	cases := []struct {
		name    string
		user    string
		env     map[string]string
		flags   map[string]string
		trusted bool
		want    want
	}{
		{name: "untrusted", want: want{cli: "coder", template: "tpl", del: false, allow: "CI,NODE_OPTIONS", ignored: 4}},
		{name: "trusted", trusted: true, want: want{cli: "./evil.sh", template: "tpl", del: true, allow: "A*,G*", ignored: 0}},
		{name: "trust env", env: map[string]string{TrustEnv: "1"}, want: want{cli: "./evil.sh", template: "tpl", del: true, allow: "A*,G*"}},
		{name: "trust env false", env: map[string]string{TrustEnv: "0"}, want: want{cli: "coder", template: "tpl", allow: "CI,NODE_OPTIONS", ignored: 4}},
		{name: "user file applies", user: "coder:\n  cliPath: /opt/coder\n  deleteOnRelease: true\n",
			want: want{cli: "/opt/coder", template: "tpl", del: true, allow: "CI,NODE_OPTIONS", ignored: 4}},
		{name: "env and flags apply", env: map[string]string{"CRABBOX_CODER_CLI": "/env/coder", "CRABBOX_ENV_ALLOW": "X*"},
			flags: map[string]string{"coder-delete-on-release": "true"},
			want:  want{cli: "/env/coder", template: "tpl", del: true, allow: "X*", ignored: 4}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			for k, v := range tc.env {
				f.env[k] = v
			}
			if tc.user != "" {
				f.writeUser(tc.user)
			}
			path := f.writeRepo("crabbox.yaml", repoYAML)
			c, err := Load(LoadOptions{Env: MapEnv(f.env), RepoRoot: f.repo, Flags: tc.flags,
				Trusted: func(p string, data []byte) bool { return tc.trusted && p == path && string(data) == repoYAML }})
			if err != nil {
				t.Fatal(err)
			}
			got := want{cli: c.Coder.CLIPath, template: c.Coder.Template, del: c.Coder.DeleteOnRelease, allow: strings.Join(c.Env.Allow, ","), ignored: len(c.Ignored)}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			warned := 0
			for _, w := range c.Warnings {
				if strings.HasPrefix(w, "ignoring ") {
					warned++
					if !strings.Contains(w, path) || !strings.Contains(w, TrustCommand) {
						t.Errorf("warning lacks the file or the command: %q", w)
					}
				}
			}
			if warned != tc.want.ignored {
				t.Errorf("%d ignore warnings, want %d: %q", warned, tc.want.ignored, c.Warnings)
			}
			for _, ig := range c.Ignored {
				if ig.File != path {
					t.Errorf("ignored %+v names the wrong file", ig)
				}
				if s, _ := c.Setting(ig.Key); s.Source == SourceRepo {
					t.Errorf("%s is ignored but its source is repo", ig.Key)
				}
			}
		})
	}
}

// TestRepoTrustStore: through the real store, trusting pins the content;
// an edit (even a single byte) is untrusted until trusted again.
func TestRepoTrustStore(t *testing.T) {
	f := newFixture(t)
	store := trust.New(filepath.Join(f.home, "state"))
	path := f.writeRepo("crabbox.yaml", "coder:\n  cliPath: /a/coder\n")
	load := func() *Config {
		c, err := Load(LoadOptions{Env: MapEnv(f.env), RepoRoot: f.repo, Trusted: store.Trusted})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := load(); c.Coder.CLIPath != "coder" {
		t.Fatalf("untrusted file applied: %q", c.Coder.CLIPath)
	}
	data := []byte("coder:\n  cliPath: /a/coder\n")
	if _, err := store.Trust(path, data, time.Now()); err != nil {
		t.Fatal(err)
	}
	if c := load(); c.Coder.CLIPath != "/a/coder" || len(c.Ignored) != 0 {
		t.Fatalf("trusted file not applied: %q %+v", c.Coder.CLIPath, c.Ignored)
	}
	f.writeRepo("crabbox.yaml", "coder:\n  cliPath: /b/coder\n")
	if c := load(); c.Coder.CLIPath != "coder" || len(c.Ignored) != 1 {
		t.Fatalf("edited file still trusted: %q", c.Coder.CLIPath)
	}
	// A second repo file is judged on its own content.
	f.writeRepo("crabbox.yaml", "coder:\n  cliPath: /a/coder\n")
	f.writeRepo(".crabbox.yaml", "coder:\n  deleteOnRelease: true\n")
	if c := load(); c.Coder.CLIPath != "/a/coder" || c.Coder.DeleteOnRelease || len(c.Ignored) != 1 || c.Ignored[0].Key != "coder.deleteOnRelease" {
		t.Fatalf("per-file trust: %q %v %+v", c.Coder.CLIPath, c.Coder.DeleteOnRelease, c.Ignored)
	}
	if ok, err := store.Revoke(path); err != nil || !ok {
		t.Fatalf("Revoke: %v %v", ok, err)
	}
	if c := load(); c.Coder.CLIPath != "coder" {
		t.Fatalf("revoked file applied")
	}
}
