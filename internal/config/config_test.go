package config

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// fixture is an isolated HOME, XDG dirs and repo root. It never touches the
// real HOME.
type fixture struct {
	t    *testing.T
	home string
	repo string
	env  map[string]string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	home := t.TempDir()
	return &fixture{t: t, home: home, repo: t.TempDir(), env: map[string]string{"HOME": home}}
}

func (f *fixture) userPath() string {
	return filepath.Join(f.home, ".config", "crabbox", "config.yaml")
}

func (f *fixture) writeFile(path, content string) string {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		f.t.Fatal(err)
	}
	return path
}

func (f *fixture) writeUser(content string) string { return f.writeFile(f.userPath(), content) }

func (f *fixture) writeRepo(name, content string) string {
	return f.writeFile(filepath.Join(f.repo, name), content)
}

func (f *fixture) load(flags map[string]string) (*Config, error) {
	// Repo files are trusted here; the trust rules have their own tests.
	return Load(LoadOptions{Env: MapEnv(f.env), RepoRoot: f.repo, Flags: flags, Trusted: func(string, []byte) bool { return true }})
}

func (f *fixture) mustLoad(flags map[string]string) *Config {
	f.t.Helper()
	c, err := f.load(flags)
	if err != nil {
		f.t.Fatalf("Load: %v", err)
	}
	return c
}

func setting(t *testing.T, c *Config, key string) Setting {
	t.Helper()
	s, ok := c.Setting(key)
	if !ok {
		t.Fatalf("no setting %q", key)
	}
	return s
}

func TestDefaults(t *testing.T) {
	f := newFixture(t)
	c := f.mustLoad(nil)
	want := Config{
		Provider:    "",
		IdleTimeout: 30 * time.Minute, TTL: 90 * time.Minute,
		Coder: CoderConfig{CLIPath: "coder", WorkspacePrefix: "crabbox-", WorkRoot: "/home/coder/crabbox",
			Wait: "yes", Parameters: []string{}},
		SSH: SSHConfig{Hosts: []SSHHost{}, WorkRoot: "/var/tmp/crabbox", Persist: 90 * time.Second},
		Sync: SyncConfig{Delete: true, GitSeed: true, Fingerprint: true, Timeout: 15 * time.Minute,
			WarnFiles: 50000, WarnBytes: 5368709120, FailFiles: 150000, FailBytes: 21474836480, Exclude: []string{}},
		Env:       EnvConfig{Allow: []string{"CI", "NODE_OPTIONS"}},
		Results:   ResultsConfig{JUnit: []string{}},
		Artifacts: ArtifactsConfig{MaxFiles: 1000, MaxBytes: 1 << 30},
		Run:       RunConfig{PreflightTools: []string{}, MaxShards: 8},
	}
	got := *c
	got.values, got.Files, got.Warnings = nil, nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
	if len(c.Warnings) != 0 || len(c.Files) != 0 {
		t.Errorf("warnings %v files %v, want none", c.Warnings, c.Files)
	}
	settings := c.Settings()
	if len(settings) != len(Keys()) {
		t.Errorf("Settings() has %d entries, Keys() %d", len(settings), len(Keys()))
	}
	if !sort.SliceIsSorted(settings, func(i, j int) bool { return settings[i].Key < settings[j].Key }) {
		t.Error("Settings() not sorted")
	}
	for _, s := range settings {
		if s.Source != SourceDefault || s.File != "" {
			t.Errorf("%s: source %q file %q, want default", s.Key, s.Source, s.File)
		}
	}
	for key, want := range map[string]string{
		"lease.idleTimeout": "30m", "lease.ttl": "90m", "env.allow": "CI,NODE_OPTIONS",
		"sync.timeout": "15m", "coder.wait": "yes", "provider": "", "sync.delete": "true",
	} {
		if got := setting(t, c, key).Value; got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
}

func TestLayers(t *testing.T) {
	f := newFixture(t)
	check := func(step string, flags map[string]string, wantValue, wantSource, wantFile string) {
		t.Helper()
		c := f.mustLoad(flags)
		s := setting(t, c, "coder.template")
		if s.Value != wantValue || s.Source != wantSource || s.File != wantFile || c.Coder.Template != wantValue {
			t.Errorf("%s: got %+v (field %q), want value %q source %q file %q", step, s, c.Coder.Template, wantValue, wantSource, wantFile)
		}
		if got := c.Source("coder.template"); got != wantSource {
			t.Errorf("%s: Source = %q, want %q", step, got, wantSource)
		}
	}
	check("default", nil, "", SourceDefault, "")
	user := f.writeUser("coder:\n  template: from-user\n")
	check("user", nil, "from-user", SourceUser, user)
	repo := f.writeRepo(".crabbox.yaml", "coder:\n  template: from-repo\n")
	check("repo", nil, "from-repo", SourceRepo, repo)
	f.env["CRABBOX_CODER_TEMPLATE"] = "from-env"
	check("env", nil, "from-env", SourceEnv, "")
	check("flag", map[string]string{"coder-template": "from-flag"}, "from-flag", SourceFlag, "")
}

func TestLayersEveryKind(t *testing.T) {
	f := newFixture(t)
	f.writeUser("idleTimeout: 10m\nsync:\n  warnFiles: 7\n  checksum: true\nenv:\n  allow: [A, B]\n")
	f.writeRepo("crabbox.yaml", "lease:\n  idleTimeout: 20m\nsync:\n  warnBytes: 99\n")
	f.env["CRABBOX_SYNC_CHECKSUM"] = "off"
	f.env["CRABBOX_ENV_ALLOW"] = "X, Y_*"
	c := f.mustLoad(map[string]string{"ttl": "2h", "coder-delete-on-release": "true"})
	if c.IdleTimeout != 20*time.Minute || c.Source("idleTimeout") != SourceRepo {
		t.Errorf("idleTimeout %v from %s", c.IdleTimeout, c.Source("idleTimeout"))
	}
	if c.TTL != 2*time.Hour || c.Source("lease.ttl") != SourceFlag {
		t.Errorf("ttl %v from %s", c.TTL, c.Source("lease.ttl"))
	}
	if c.Sync.WarnFiles != 7 || c.Source("sync.warnFiles") != SourceUser {
		t.Errorf("warnFiles %d from %s", c.Sync.WarnFiles, c.Source("sync.warnFiles"))
	}
	if c.Sync.WarnBytes != 99 || c.Source("sync.warnBytes") != SourceRepo {
		t.Errorf("warnBytes %d", c.Sync.WarnBytes)
	}
	if c.Sync.Checksum || c.Source("sync.checksum") != SourceEnv {
		t.Errorf("checksum %v from %s", c.Sync.Checksum, c.Source("sync.checksum"))
	}
	if !reflect.DeepEqual(c.Env.Allow, []string{"X", "Y_*"}) || c.Source("env.allow") != SourceEnv {
		t.Errorf("env.allow %v", c.Env.Allow)
	}
	if !c.Coder.DeleteOnRelease || c.Source("coder.deleteOnRelease") != SourceFlag {
		t.Errorf("deleteOnRelease %v", c.Coder.DeleteOnRelease)
	}
	if got := c.Source("nope"); got != "" {
		t.Errorf("Source(unknown) = %q", got)
	}
}

func TestCrabboxConfigReplacesSearch(t *testing.T) {
	f := newFixture(t)
	f.writeUser("coder:\n  template: from-user\n  preset: user-preset\n")
	f.writeRepo("crabbox.yaml", "coder:\n  template: from-repo\n  wait: no\n")
	custom := f.writeFile(filepath.Join(t.TempDir(), "custom.yaml"), "coder:\n  template: from-custom\n")
	f.env["CRABBOX_CONFIG"] = custom
	c := f.mustLoad(nil)
	if s := setting(t, c, "coder.template"); s.Value != "from-custom" || s.Source != SourceUser || s.File != custom {
		t.Errorf("template %+v", s)
	}
	if c.Coder.Preset != "" || c.Coder.Wait != "yes" {
		t.Errorf("user or repo file was read: preset %q wait %q", c.Coder.Preset, c.Coder.Wait)
	}
	if !reflect.DeepEqual(c.Files, []string{custom}) {
		t.Errorf("Files = %v", c.Files)
	}
	if got := UserConfigPath(MapEnv(f.env)); got != custom {
		t.Errorf("UserConfigPath = %q", got)
	}

	// A missing CRABBOX_CONFIG file is fine: defaults only.
	f.env["CRABBOX_CONFIG"] = filepath.Join(t.TempDir(), "missing.yaml")
	c = f.mustLoad(nil)
	if c.Coder.Template != "" || len(c.Files) != 0 {
		t.Errorf("template %q files %v", c.Coder.Template, c.Files)
	}
}

func TestRepoFilesBothRead(t *testing.T) {
	f := newFixture(t)
	first := f.writeRepo("crabbox.yaml", "coder:\n  template: first\n  preset: only-first\n")
	second := f.writeRepo(".crabbox.yaml", "coder:\n  template: second\n")
	c := f.mustLoad(nil)
	if s := setting(t, c, "coder.template"); s.Value != "second" || s.Source != SourceRepo || s.File != second {
		t.Errorf("template %+v", s)
	}
	if s := setting(t, c, "coder.preset"); s.Value != "only-first" || s.Source != SourceRepo || s.File != first {
		t.Errorf("preset %+v", s)
	}
	if !reflect.DeepEqual(c.Files, []string{first, second}) {
		t.Errorf("Files = %v", c.Files)
	}
}

func TestNoRepoRoot(t *testing.T) {
	f := newFixture(t)
	f.writeRepo("crabbox.yaml", "coder:\n  template: repo\n")
	c, err := Load(LoadOptions{Env: MapEnv(f.env)})
	if err != nil || c.Coder.Template != "" {
		t.Fatalf("template %q err %v", c.Coder.Template, err)
	}
}

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name  string
		user  string // user config content
		repo  string // .crabbox.yaml content
		env   map[string]string
		flags map[string]string
		want  string // exact message prefix
	}{
		{name: "wait file", repo: "coder:\n  wait: maybe\n", want: `coder.wait must be yes, no, or auto (got "maybe"); set in `},
		{name: "wait env", env: map[string]string{"CRABBOX_CODER_WAIT": "maybe"}, want: `CRABBOX_CODER_WAIT must be yes, no, or auto (got "maybe")`},
		{name: "wait flag", flags: map[string]string{"coder-wait": "maybe"}, want: `--coder-wait must be yes, no, or auto (got "maybe")`},
		{name: "wait bool yaml", user: "coder:\n  wait: true\n", want: `coder.wait must be yes, no, or auto`},
		{name: "workRoot usr", repo: "coder:\n  workRoot: /usr\n", want: `coder.workRoot "/usr" is too broad; choose a dedicated subdirectory`},
		{name: "workRoot unclean", repo: "coder:\n  workRoot: /usr/../tmp/\n", want: `coder.workRoot "/tmp" is too broad`},
		{name: "workRoot relative", repo: "coder:\n  workRoot: work\n", want: `coder.workRoot must be an absolute path (got "work")`},
		{name: "workRoot flag", flags: map[string]string{"coder-work-root": "/"}, want: `--coder-work-root "/" is too broad`},
		{name: "workRoot env", env: map[string]string{"CRABBOX_CODER_WORK_ROOT": "/home"}, want: `CRABBOX_CODER_WORK_ROOT "/home" is too broad`},
		{name: "generic workRoot copied for coder", repo: "provider: coder\nworkRoot: /var\n", want: `workRoot "/var" is too broad`},
		{name: "generic workRoot relative", env: map[string]string{"CRABBOX_WORK_ROOT": "rel"}, want: `CRABBOX_WORK_ROOT must be an absolute path`},
		{name: "prefix dashes", repo: "coder:\n  workspacePrefix: \"--\"\n", want: `coder.workspacePrefix "--" is empty after removing dashes`},
		{name: "prefix chars", flags: map[string]string{"coder-workspace-prefix": "a_b"}, want: `--coder-workspace-prefix "a_b" may only contain a-z, 0-9 and -`},
		{name: "prefix too long", env: map[string]string{"CRABBOX_CODER_WORKSPACE_PREFIX": "abcdefghijklmnopqrstu"}, want: `CRABBOX_CODER_WORKSPACE_PREFIX "abcdefghijklmnopqrstu" is too long`},
		{name: "cliPath empty", user: "coder:\n  cliPath: \"  \"\n", want: `coder.cliPath must not be empty`},
		{name: "cliPath empty flag", flags: map[string]string{"coder-cli": ""}, want: `--coder-cli must not be empty`},
		{name: "class file coder", repo: "provider: coder\nclass: beast\n", want: `class is not supported for provider=coder; choose size through the Coder template or --coder-preset; set in `},
		{name: "class flag coder", env: map[string]string{"CRABBOX_PROVIDER": "coder"}, flags: map[string]string{"class": "beast"},
			want: `--class is not supported for provider=coder; choose size through the Coder template or --coder-preset`},
		{name: "class env coder", env: map[string]string{"CRABBOX_DEFAULT_CLASS": "big"}, flags: map[string]string{"provider": "coder"},
			want: `CRABBOX_DEFAULT_CLASS is not supported for provider=coder`},
		{name: "type flag coder", flags: map[string]string{"provider": "coder", "type": "cx22"},
			want: `--type is not supported for provider=coder; choose a Coder template with --coder-template`},
		{name: "type alias file coder", user: "provider: coder\ntype: cx22\n", want: `type is not supported for provider=coder`},
		{name: "target coder", flags: map[string]string{"provider": "coder", "target": "macos"}, want: `--target must be linux, the only target crabbox supports (got "macos")`},
		{name: "target ssh", repo: "provider: ssh\ntarget: windows\n", want: `target must be linux, the only target crabbox supports (got "windows"); set in `},
		{name: "target invalid", env: map[string]string{"CRABBOX_TARGET": "plan9"}, want: `CRABBOX_TARGET must be linux, the only target crabbox supports (got "plan9")`},
		{name: "provider invalid", flags: map[string]string{"provider": "aws"}, want: `--provider must be coder or ssh (got "aws")`},
		{name: "param file", repo: "coder:\n  parameters:\n    - region=iad\n    - broken\n", want: `coder.parameters entry "broken" must be name=value`},
		{name: "param file scalar", repo: "coder:\n  parameters: a=b,=c\n", want: `coder.parameters entry "=c" must be name=value`},
		{name: "param file empty entry", repo: "coder:\n  parameters: [\"a=b\", \"\"]\n", want: `coder.parameters entry "" must be name=value`},
		{name: "param env", env: map[string]string{"CRABBOX_CODER_PARAMETERS": "a=b,broken"}, want: `CRABBOX_CODER_PARAMETERS entry "broken" must be name=value`},
		{name: "param flag", flags: map[string]string{"coder-parameter": "broken"}, want: `--coder-parameter entry "broken" must be name=value`},
		{name: "duration file", user: "lease:\n  ttl: forever\n", want: `lease.ttl must be a duration such as 30m (got "forever")`},
		{name: "duration alias file", user: "idleTimeout: soon\n", want: `idleTimeout must be a duration such as 30m`},
		{name: "duration env", env: map[string]string{"CRABBOX_IDLE_TIMEOUT": "30"}, want: `CRABBOX_IDLE_TIMEOUT must be a duration such as 30m (got "30")`},
		{name: "duration flag", flags: map[string]string{"idle-timeout": "0s"}, want: `--idle-timeout must be a positive duration`},
		{name: "int file", repo: "sync:\n  warnFiles: many\n", want: `sync.warnFiles must be a non-negative integer (got "many")`},
		{name: "int env negative", env: map[string]string{"CRABBOX_SYNC_FAIL_BYTES": "-1"}, want: `CRABBOX_SYNC_FAIL_BYTES must be a non-negative integer`},
		{name: "bool file", repo: "sync:\n  delete: sometimes\n", want: `sync.delete must be true or false (got "sometimes")`},
		{name: "bool flag", flags: map[string]string{"coder-delete-on-release": "yes please"}, want: `--coder-delete-on-release must be true or false`},
		{name: "env allow", repo: "env:\n  allow: [\"BAD-NAME\"]\n", want: `env.allow entry "BAD-NAME" must be a variable name`},
		{name: "mapping for scalar", repo: "coder:\n  template:\n    a: b\n", want: `coder.template must be a single value, not a mapping`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.user != "" {
				f.writeUser(tt.user)
			}
			if tt.repo != "" {
				f.writeRepo(".crabbox.yaml", tt.repo)
			}
			for k, v := range tt.env {
				f.env[k] = v
			}
			_, err := f.load(tt.flags)
			if err == nil {
				t.Fatalf("Load succeeded, want error %q", tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error %q\n want prefix %q", err, tt.want)
			}
			if code := exitcode.Code(err); code != exitcode.Usage {
				t.Errorf("exit code %d, want 2", code)
			}
		})
	}
}

func TestFileErrors(t *testing.T) {
	t.Run("invalid yaml", func(t *testing.T) {
		f := newFixture(t)
		p := f.writeRepo("crabbox.yaml", "coder: [unclosed\n")
		_, err := f.load(nil)
		if err == nil || !strings.Contains(err.Error(), p) || exitcode.Code(err) != 2 {
			t.Fatalf("err %v (code %d), want exit 2 naming %s", err, exitcode.Code(err), p)
		}
	})
	t.Run("not a mapping", func(t *testing.T) {
		f := newFixture(t)
		p := f.writeUser("- a\n- b\n")
		_, err := f.load(nil)
		if err == nil || !strings.Contains(err.Error(), p) || exitcode.Code(err) != 2 {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("group not a mapping", func(t *testing.T) {
		f := newFixture(t)
		f.writeUser("coder: go-dev\n")
		_, err := f.load(nil)
		if err == nil || !strings.Contains(err.Error(), "coder must be a mapping") || exitcode.Code(err) != 2 {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("duplicate key", func(t *testing.T) {
		f := newFixture(t)
		f.writeUser("provider: coder\nprovider: ssh\n")
		_, err := f.load(nil)
		if err == nil || !strings.Contains(err.Error(), `"provider" is set twice`) || exitcode.Code(err) != 2 {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		f := newFixture(t)
		p := filepath.Join(f.repo, "crabbox.yaml")
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		_, err := f.load(nil)
		if err == nil || !strings.Contains(err.Error(), p) || exitcode.Code(err) != 2 {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("empty files are fine", func(t *testing.T) {
		f := newFixture(t)
		f.writeUser("")
		f.writeRepo("crabbox.yaml", "# only a comment\n")
		f.writeRepo(".crabbox.yaml", "coder:\n")
		c := f.mustLoad(nil)
		if len(c.Files) != 3 || len(c.Warnings) != 0 {
			t.Errorf("files %v warnings %v", c.Files, c.Warnings)
		}
	})
}

func TestWarnings(t *testing.T) {
	f := newFixture(t)
	user := f.writeUser("profile: fast\ncoder:\n  template: t\n  token: nope\nssh:\n  user: me\nidleTimeout: 5m\nlease:\n  idleTimeout: 6m\n")
	f.env["CRABBOX_SYNC_DELETE"] = "maybe"
	c := f.mustLoad(nil)
	joined := strings.Join(c.Warnings, "\n")
	for _, want := range []string{
		user + `: unknown key "profile" (ignored)`,
		user + `: unknown key "coder.token" (ignored)`,
		user + `: unknown key "ssh.user" (ignored)`,
		"both idleTimeout and lease.idleTimeout are set; using lease.idleTimeout",
		`CRABBOX_SYNC_DELETE="maybe" is not a boolean`,
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("warnings missing %q:\n%s", want, joined)
		}
	}
	if c.IdleTimeout != 6*time.Minute {
		t.Errorf("idleTimeout %v, want the canonical key's 6m", c.IdleTimeout)
	}
	if !c.Sync.Delete || c.Source("sync.delete") != SourceDefault {
		t.Errorf("invalid env bool was not ignored: %v from %s", c.Sync.Delete, c.Source("sync.delete"))
	}
	if strings.Contains(joined, "accessible by group") {
		t.Errorf("0600 user config flagged: %s", joined)
	}
}

func TestUserConfigModeWarning(t *testing.T) {
	f := newFixture(t)
	p := f.writeUser("provider: coder\n")
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	c := f.mustLoad(nil)
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "user config "+p+" is accessible by group or others (mode 0644)") {
		t.Errorf("warnings %v", c.Warnings)
	}
	// Repo files are not checked.
	f2 := newFixture(t)
	rp := f2.writeRepo("crabbox.yaml", "provider: coder\n")
	if err := os.Chmod(rp, 0o644); err != nil {
		t.Fatal(err)
	}
	if c := f2.mustLoad(nil); len(c.Warnings) != 0 {
		t.Errorf("repo file mode warned: %v", c.Warnings)
	}
}

func TestNormalizeWorkspacePrefix(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{in: "", want: "crabbox-"},
		{in: "   ", want: "crabbox-"},
		{in: "crabbox", want: "crabbox-"},
		{in: "crabbox-", want: "crabbox-"},
		{in: "Team--Dev", want: "team-dev-"},
		{in: "-x-", want: "x-"},
		{in: " CI---Bot--- ", want: "ci-bot-"},
		{in: "a1", want: "a1-"},
		{in: "abcdefghijklmnopqrs", want: "abcdefghijklmnopqrs-"}, // 20 chars normalized
		{in: "abcdefghijklmnopqrst", err: true},                   // 21 chars normalized
		{in: "--", err: true},
		{in: "-", err: true},
		{in: "team_dev", err: true},
		{in: "team dev", err: true},
		{in: "tëam", err: true},
	}
	for _, tt := range tests {
		got, err := NormalizeWorkspacePrefix(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("NormalizeWorkspacePrefix(%q) = %q, %v; want %q, err=%v", tt.in, got, err, tt.want, tt.err)
		}
	}

	f := newFixture(t)
	f.writeRepo("crabbox.yaml", "coder:\n  workspacePrefix: Team--Dev\n")
	if c := f.mustLoad(nil); c.Coder.WorkspacePrefix != "team-dev-" || setting(t, c, "coder.workspacePrefix").Value != "team-dev-" {
		t.Errorf("loaded prefix %q", c.Coder.WorkspacePrefix)
	}
}

func TestParseEnvBool(t *testing.T) {
	tests := []struct {
		in        string
		want, set bool
	}{
		{"1", true, true}, {"true", true, true}, {"TRUE", true, true}, {"yes", true, true}, {"On", true, true},
		{"0", false, true}, {"false", false, true}, {"no", false, true}, {"OFF", false, true}, {" yes ", true, true},
		{"", false, false}, {"maybe", false, false}, {"2", false, false}, {"t", false, false}, {"y", false, false},
	}
	for _, tt := range tests {
		got, ok := parseEnvBool(tt.in)
		if got != tt.want || ok != tt.set {
			t.Errorf("parseEnvBool(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.set)
		}
	}

	// Through Load: a valid env bool overrides the file; an invalid one is
	// ignored and the file value stays.
	for _, tt := range tests {
		f := newFixture(t)
		f.writeRepo("crabbox.yaml", "coder:\n  useParameterDefaults: true\n")
		f.env["CRABBOX_CODER_USE_PARAMETER_DEFAULTS"] = tt.in
		c := f.mustLoad(nil)
		want, wantSrc := true, SourceRepo
		if tt.set {
			want, wantSrc = tt.want, SourceEnv
		}
		if c.Coder.UseParameterDefaults != want || c.Source("coder.useParameterDefaults") != wantSrc {
			t.Errorf("env %q: got %v from %s, want %v from %s", tt.in, c.Coder.UseParameterDefaults,
				c.Source("coder.useParameterDefaults"), want, wantSrc)
		}
	}
}

func TestBoolFlags(t *testing.T) {
	f := newFixture(t)
	f.env["CRABBOX_CODER_DELETE_ON_RELEASE"] = "1"
	c := f.mustLoad(map[string]string{"coder-delete-on-release": "false"})
	if c.Coder.DeleteOnRelease || c.Source("coder.deleteOnRelease") != SourceFlag {
		t.Errorf("--coder-delete-on-release=false: %v from %s", c.Coder.DeleteOnRelease, c.Source("coder.deleteOnRelease"))
	}
	c = f.mustLoad(map[string]string{"coder-use-parameter-defaults": "true", "not-a-config-flag": "x"})
	if !c.Coder.UseParameterDefaults {
		t.Error("--coder-use-parameter-defaults not applied")
	}
}

func TestParameters(t *testing.T) {
	tests := []struct {
		name  string
		repo  string
		env   string
		flag  *string
		want  []string
		wantS string
	}{
		{name: "yaml list", repo: "coder:\n  parameters:\n    - region=iad\n    - ' size = xl '\n    - tags=a,b\n", want: []string{"region=iad", "size=xl", "tags=a,b"}, wantS: SourceRepo},
		{name: "yaml scalar", repo: "coder:\n  parameters: region=iad, size=xl,\n", want: []string{"region=iad", "size=xl"}, wantS: SourceRepo},
		{name: "yaml empty list clears", repo: "coder:\n  parameters: []\n", want: []string{}, wantS: SourceRepo},
		{name: "env replaces", repo: "coder:\n  parameters: [a=1]\n", env: "b=2, c=3", want: []string{"b=2", "c=3"}, wantS: SourceEnv},
		{name: "env none clears", repo: "coder:\n  parameters: [a=1]\n", env: "none", want: []string{}, wantS: SourceEnv},
		{name: "env NONE clears", repo: "coder:\n  parameters: [a=1]\n", env: " NONE ", want: []string{}, wantS: SourceEnv},
		{name: "flag replaces", repo: "coder:\n  parameters: [a=1]\n", env: "b=2", flag: ptr("c=3,d=4"), want: []string{"c=3", "d=4"}, wantS: SourceFlag},
		{name: "flag none clears", repo: "coder:\n  parameters: [a=1]\n", flag: ptr("none"), want: []string{}, wantS: SourceFlag},
		{name: "value may be empty", env: "flag=", want: []string{"flag="}, wantS: SourceEnv},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.repo != "" {
				f.writeRepo("crabbox.yaml", tt.repo)
			}
			if tt.env != "" {
				f.env["CRABBOX_CODER_PARAMETERS"] = tt.env
			}
			var flags map[string]string
			if tt.flag != nil {
				flags = map[string]string{"coder-parameter": *tt.flag}
			}
			c := f.mustLoad(flags)
			if !reflect.DeepEqual(c.Coder.Parameters, tt.want) || c.Source("coder.parameters") != tt.wantS {
				t.Errorf("parameters %q from %s, want %q from %s", c.Coder.Parameters, c.Source("coder.parameters"), tt.want, tt.wantS)
			}
		})
	}
}

func ptr(s string) *string { return &s }

func TestHomeExpansion(t *testing.T) {
	f := newFixture(t)
	f.writeRepo("crabbox.yaml", "coder:\n  cliPath: ~/bin/coder\n  richParameterFile: ~/.config/coder/rich.yaml\n")
	c := f.mustLoad(nil)
	if want := filepath.Join(f.home, "bin", "coder"); c.Coder.CLIPath != want {
		t.Errorf("file cliPath %q, want %q", c.Coder.CLIPath, want)
	}
	if want := filepath.Join(f.home, ".config", "coder", "rich.yaml"); c.Coder.RichParameterFile != want {
		t.Errorf("file richParameterFile %q, want %q", c.Coder.RichParameterFile, want)
	}

	f.env["CRABBOX_CODER_CLI"] = "~/env/coder"
	f.env["CRABBOX_CODER_RICH_PARAMETER_FILE"] = "~"
	c = f.mustLoad(nil)
	if want := filepath.Join(f.home, "env", "coder"); c.Coder.CLIPath != want {
		t.Errorf("env cliPath %q, want %q", c.Coder.CLIPath, want)
	}
	if c.Coder.RichParameterFile != f.home {
		t.Errorf("env richParameterFile %q, want %q", c.Coder.RichParameterFile, f.home)
	}

	c = f.mustLoad(map[string]string{"coder-cli": "~/flag/coder"})
	if want := filepath.Join(f.home, "flag", "coder"); c.Coder.CLIPath != want {
		t.Errorf("flag cliPath %q, want %q", c.Coder.CLIPath, want)
	}

	// Only a leading ~ or ~/ is expanded.
	c = f.mustLoad(map[string]string{"coder-cli": "~other/coder"})
	if c.Coder.CLIPath != "~other/coder" {
		t.Errorf("cliPath %q", c.Coder.CLIPath)
	}
	if got := expandHome("~/x", MapEnv(nil)); got != "~/x" {
		t.Errorf("expandHome without HOME = %q", got)
	}
}

func TestWorkRootResolution(t *testing.T) {
	tests := []struct {
		name           string
		repo           string
		env            map[string]string
		flags          map[string]string
		wantGeneric    string
		wantCoder      string
		wantCoderSrc   string
		wantGenericSrc string
	}{
		{name: "defaults", wantGeneric: "/work/crabbox", wantCoder: "/home/coder/crabbox", wantCoderSrc: SourceDefault, wantGenericSrc: SourceDefault},
		{name: "defaults coder", repo: "provider: coder\n", wantGeneric: "/home/coder/crabbox", wantCoder: "/home/coder/crabbox", wantCoderSrc: SourceDefault, wantGenericSrc: SourceDefault},
		{name: "generic copied", repo: "provider: coder\nworkRoot: /srv/cbx/\n", wantGeneric: "/srv/cbx", wantCoder: "/srv/cbx", wantCoderSrc: SourceRepo, wantGenericSrc: SourceRepo},
		{name: "generic copied into empty coder root", repo: "provider: coder\nworkRoot: /srv/cbx\ncoder:\n  workRoot: \"\"\n", wantGeneric: "/srv/cbx", wantCoder: "/srv/cbx", wantCoderSrc: SourceRepo, wantGenericSrc: SourceRepo},
		{name: "generic copied without provider", env: map[string]string{"CRABBOX_WORK_ROOT": "/srv/x"}, wantGeneric: "/srv/x", wantCoder: "/srv/x", wantCoderSrc: SourceEnv, wantGenericSrc: SourceEnv},
		{name: "generic broad ok without coder", env: map[string]string{"CRABBOX_WORK_ROOT": "/tmp"}, wantGeneric: "/tmp", wantCoder: "/tmp", wantCoderSrc: SourceEnv, wantGenericSrc: SourceEnv},
		{name: "explicit coder root wins", repo: "provider: coder\nworkRoot: /srv/cbx\ncoder:\n  workRoot: /home/coder/w\n", wantGeneric: "/home/coder/w", wantCoder: "/home/coder/w", wantCoderSrc: SourceRepo, wantGenericSrc: SourceRepo},
		{name: "explicit coder root wins over later generic", repo: "provider: coder\ncoder:\n  workRoot: /home/coder/w\n", env: map[string]string{"CRABBOX_WORK_ROOT": "/srv/env"}, wantGeneric: "/home/coder/w", wantCoder: "/home/coder/w", wantCoderSrc: SourceRepo, wantGenericSrc: SourceRepo},
		{name: "explicit default-valued coder root wins", repo: "provider: coder\nworkRoot: /srv/cbx\ncoder:\n  workRoot: /home/coder/crabbox\n", wantGeneric: "/home/coder/crabbox", wantCoder: "/home/coder/crabbox", wantCoderSrc: SourceRepo, wantGenericSrc: SourceRepo},
		{name: "flag sets both", repo: "workRoot: /srv/cbx\n", flags: map[string]string{"coder-work-root": "/data/cbx"}, wantGeneric: "/data/cbx", wantCoder: "/data/cbx", wantCoderSrc: SourceFlag, wantGenericSrc: SourceFlag},
		{name: "coder root without coder provider", repo: "coder:\n  workRoot: /home/coder/w\n", wantGeneric: "/work/crabbox", wantCoder: "/home/coder/w", wantCoderSrc: SourceRepo, wantGenericSrc: SourceDefault},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.repo != "" {
				f.writeRepo("crabbox.yaml", tt.repo)
			}
			for k, v := range tt.env {
				f.env[k] = v
			}
			c := f.mustLoad(tt.flags)
			if s := setting(t, c, "workRoot"); s.Value != tt.wantGeneric || c.Coder.WorkRoot != tt.wantCoder {
				t.Errorf("workRoot %q coder.workRoot %q, want %q %q", s.Value, c.Coder.WorkRoot, tt.wantGeneric, tt.wantCoder)
			}
			if c.Source("coder.workRoot") != tt.wantCoderSrc || c.Source("workRoot") != tt.wantGenericSrc {
				t.Errorf("sources coder %s generic %s, want %s %s", c.Source("coder.workRoot"), c.Source("workRoot"), tt.wantCoderSrc, tt.wantGenericSrc)
			}
		})
	}
}

func TestProviderAndAliases(t *testing.T) {
	tests := []struct{ in, want string }{
		{"coder", "coder"}, {"Coder", "coder"}, {"ssh", "ssh"}, {"static", "ssh"}, {"static-ssh", "ssh"}, {"", ""},
	}
	for _, tt := range tests {
		f := newFixture(t)
		c := f.mustLoad(map[string]string{"provider": tt.in})
		if c.Provider != tt.want {
			t.Errorf("--provider %q = %q, want %q", tt.in, c.Provider, tt.want)
		}
	}

	f := newFixture(t)
	f.writeUser("ttl: 3600\nidleTimeout: 45m\ntype: cx22\nclass: standard\nprovider: ssh\n")
	c := f.mustLoad(nil)
	typ, class := setting(t, c, "serverType").Value, setting(t, c, "class").Value
	if c.TTL != time.Hour || c.IdleTimeout != 45*time.Minute || typ != "cx22" || class != "standard" || c.Provider != "ssh" {
		t.Errorf("got ttl %v idle %v type %q class %q provider %q", c.TTL, c.IdleTimeout, typ, class, c.Provider)
	}
	if s := setting(t, c, "ttl"); s.Key != "lease.ttl" || s.Value != "1h" || s.Source != SourceUser {
		t.Errorf("ttl setting %+v", s)
	}
	if c.Source("serverType") != SourceUser || c.Source("type") != SourceUser {
		t.Errorf("serverType source %q", c.Source("serverType"))
	}
}

func TestCoderAllowsDefaultClassAndLinux(t *testing.T) {
	f := newFixture(t)
	f.writeRepo("crabbox.yaml", "provider: coder\ntarget: Linux\ncoder:\n  template: go-dev\n  wait: AUTO\n")
	c := f.mustLoad(nil)
	if c.Provider != "coder" || setting(t, c, "target").Value != "linux" || c.Coder.Wait != "auto" || setting(t, c, "class").Value != "beast" {
		t.Errorf("got %+v", c)
	}
}

func TestPaths(t *testing.T) {
	tests := []struct {
		name                          string
		env                           map[string]string
		wantUser, wantState, wantConf string
	}{
		{name: "home", env: map[string]string{"HOME": "/h"},
			wantUser: "/h/.config/crabbox/config.yaml", wantState: "/h/.local/state/crabbox", wantConf: "/h/.config/crabbox"},
		{name: "xdg", env: map[string]string{"HOME": "/h", "XDG_CONFIG_HOME": "/xc", "XDG_STATE_HOME": "/xs"},
			wantUser: "/xc/crabbox/config.yaml", wantState: "/xs/crabbox", wantConf: "/xc/crabbox"},
		{name: "relative xdg ignored", env: map[string]string{"HOME": "/h", "XDG_CONFIG_HOME": "rel", "XDG_STATE_HOME": "rel"},
			wantUser: "/h/.config/crabbox/config.yaml", wantState: "/h/.local/state/crabbox", wantConf: "/h/.config/crabbox"},
		{name: "crabbox config", env: map[string]string{"HOME": "/h", "XDG_CONFIG_HOME": "/xc", "CRABBOX_CONFIG": "~/my.yaml"},
			wantUser: "/h/my.yaml", wantState: "/h/.local/state/crabbox", wantConf: "/xc/crabbox"},
		{name: "empty crabbox config ignored", env: map[string]string{"HOME": "/h", "CRABBOX_CONFIG": ""},
			wantUser: "/h/.config/crabbox/config.yaml", wantState: "/h/.local/state/crabbox", wantConf: "/h/.config/crabbox"},
		{name: "nothing", env: map[string]string{}},
	}
	for _, tt := range tests {
		env := MapEnv(tt.env)
		if got := UserConfigPath(env); got != tt.wantUser {
			t.Errorf("%s: UserConfigPath = %q, want %q", tt.name, got, tt.wantUser)
		}
		if got := StateDir(env); got != tt.wantState {
			t.Errorf("%s: StateDir = %q, want %q", tt.name, got, tt.wantState)
		}
		if got := ConfigDir(env); got != tt.wantConf {
			t.Errorf("%s: ConfigDir = %q, want %q", tt.name, got, tt.wantConf)
		}
	}

	// Load uses XDG_CONFIG_HOME for the user file.
	f := newFixture(t)
	xdg := t.TempDir()
	f.env["XDG_CONFIG_HOME"] = xdg
	p := f.writeFile(filepath.Join(xdg, "crabbox", "config.yaml"), "coder:\n  preset: xdg\n")
	f.writeUser("coder:\n  preset: home\n")
	if s := setting(t, f.mustLoad(nil), "coder.preset"); s.Value != "xdg" || s.File != p {
		t.Errorf("preset %+v", s)
	}
}

func TestNoTokenOrSessionNames(t *testing.T) {
	bad := func(s string) bool {
		s = strings.ToLower(s)
		return strings.Contains(s, "token") || strings.Contains(s, "session")
	}
	for _, k := range Keys() {
		for _, name := range append([]string{k.Key, k.Env, k.Flag}, k.Aliases...) {
			if bad(name) {
				t.Errorf("key %s: name %q mentions token/session", k.Key, name)
			}
		}
	}
	for _, fs := range FlagNames() {
		if bad(fs.Name) {
			t.Errorf("flag %q mentions token/session", fs.Name)
		}
	}
}

func TestFlagNames(t *testing.T) {
	want := []string{
		"checksum", "class", "coder-cli", "coder-delete-on-release", "coder-parameter", "coder-preset",
		"coder-rich-parameter-file", "coder-template", "coder-use-parameter-defaults", "coder-wait",
		"coder-work-root", "coder-workspace-prefix", "fail-on-test-failures", "force-sync-large",
		"idle-timeout", "junit", "preflight-tools", "provider", "results-auto",
		"ssh-clean-workdir", "ssh-host", "ssh-identity", "ssh-known-hosts", "ssh-work-root", "target", "ttl", "type",
	}
	kinds := map[string]string{
		"checksum": "bool", "coder-delete-on-release": "bool", "coder-use-parameter-defaults": "bool",
		"fail-on-test-failures": "bool", "force-sync-large": "bool", "results-auto": "bool", "ssh-clean-workdir": "bool",
		"coder-parameter": "list", "junit": "list", "preflight-tools": "list", "ssh-host": "list",
	}
	var got []string
	for _, fs := range FlagNames() {
		got = append(got, fs.Name)
		if fs.Usage == "" || fs.Key == "" {
			t.Errorf("flag %s: empty usage or key", fs.Name)
		}
		wantKind := kinds[fs.Name]
		if wantKind == "" {
			wantKind = "string"
		}
		if fs.Kind != wantKind {
			t.Errorf("flag %s kind %q, want %q", fs.Name, fs.Kind, wantKind)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("FlagNames = %v\nwant %v", got, want)
	}
}

// TestKeyTableDefaults checks that each key's shown default matches its typed
// default, so docs and `config show` agree.
func TestKeyTableDefaults(t *testing.T) {
	for _, d := range keyTable {
		if got := formatValue(d.def); got != d.Default {
			t.Errorf("%s: Default %q, typed default formats as %q", d.Key, d.Default, got)
		}
		if d.Usage == "" {
			t.Errorf("%s: no usage", d.Key)
		}
	}
}

func TestDocsListEveryKey(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Skipf("docs not readable: %v", err)
	}
	doc := string(data)
	for _, k := range Keys() {
		for _, name := range []string{"`" + k.Key + "`", k.Env, k.Flag} {
			if name != "" && !strings.Contains(doc, name) {
				t.Errorf("docs/configuration.md does not mention %s (key %s)", name, k.Key)
			}
		}
	}
}

// TestDocsExampleLoads loads the first yaml block of docs/configuration.md
// as a user config: it must be valid and warning-free.
func TestDocsExampleLoads(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Skipf("docs not readable: %v", err)
	}
	_, rest, ok := strings.Cut(string(data), "```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no yaml example in docs/configuration.md")
	}
	f := newFixture(t)
	f.writeUser(example)
	c := f.mustLoad(nil)
	if len(c.Warnings) != 0 {
		t.Errorf("warnings: %v", c.Warnings)
	}
	if c.Provider != "coder" || c.Coder.Template != "go-dev" || c.Coder.Wait != "yes" ||
		c.Coder.CLIPath != filepath.Join(f.home, "bin", "coder") || !c.Results.FailOnFailures ||
		!reflect.DeepEqual(c.Sync.Exclude, []string{"*.log", "!keep.log"}) {
		t.Errorf("example loaded as %+v", c)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		30 * time.Minute: "30m", 90 * time.Minute: "90m", time.Hour: "1h", 2 * time.Hour: "2h",
		45 * time.Second: "45s", 90 * time.Second: "1m30s", 0: "0s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// run.preflightTools takes program names only, from any layer.
func TestPreflightToolsKey(t *testing.T) {
	f := newFixture(t)
	c := f.mustLoad(map[string]string{"preflight-tools": "go, node,,python3"})
	if want := []string{"go", "node", "python3"}; !reflect.DeepEqual(c.Run.PreflightTools, want) {
		t.Errorf("PreflightTools = %q, want %q", c.Run.PreflightTools, want)
	}
	for _, bad := range []string{"/usr/bin/go", "-rf", "a b", "$(id)"} {
		if _, err := checkToolNames([]string{bad}); err == nil {
			t.Errorf("checkToolNames accepted %q", bad)
		}
	}
}
