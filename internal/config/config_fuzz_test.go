package config

import (
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// FuzzLoad: a fuzzed repo crabbox.yaml never panics Load; a failure is
// always exit 2; a success yields a validated configuration.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		"",
		"provider: coder\ncoder:\n  template: go-dev\n",
		"provider: coder\nlease:\n  idleTimeout: 30m\n  ttl: 3600\ncoder:\n  cliPath: ~/bin/coder\n  template: go-dev\n  preset: large\n  workspacePrefix: Team--Dev\n  workRoot: /home/coder/crabbox\n  wait: auto\n  useParameterDefaults: yes\n  parameters:\n    - region=iad\n    - tags=a,b\n  richParameterFile: ~/p.yaml\n  deleteOnRelease: false\nsync:\n  timeout: 15m\n  exclude: [\"*.log\", \"!keep.log\"]\n  warnFiles: 10\n  failBytes: 21474836480\nenv:\n  allow: [CI, NODE_OPTIONS, NPM_*]\nresults:\n  junit: build/a.xml,b.xml\n  failOnFailures: on\n",
		"a: &a [*a]\nprovider: *a\n",
		"coder: &c\n  template: x\nsync: *c\n",
		"[1, 2]\n",
		"coder: 5\n",
		"ttl: -9223372037\n",
		"ttl: 9223372037\n",
		"ttl: 0x10\n",
		"idleTimeout: 5m\nlease:\n  idleTimeout: 6m\n",
		"coder:\n  workRoot: /usr\n",
		"coder:\n  workRoot: \"/home/coder/$(touch x)\"\n",
		"coder:\n  parameters: [\"=x\", \"a\"]\n",
		"coder:\n  wait: maybe\n",
		"env:\n  allow: [\"*\", \"A B\"]\n",
		"provider: coder\nclass: big\n",
		"key: value\n? [complex, key]\n: v\n",
		"\xff\xfe\x00",
		"---\n---\n",
		"coder:\n  template: !!binary aGVsbG8=\n",
	} {
		f.Add(s)
	}
	repo := f.TempDir()
	home := f.TempDir()
	env := MapEnv(map[string]string{"HOME": home})
	f.Fuzz(func(t *testing.T, data string) {
		if err := os.WriteFile(filepath.Join(repo, "crabbox.yaml"), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(LoadOptions{Env: env, RepoRoot: repo})
		if err != nil {
			if code := exitcode.Code(err); code != exitcode.Usage {
				t.Fatalf("Load error has exit %d, want 2: %v", code, err)
			}
			return
		}
		checkLoaded(t, c)
	})
}

// checkLoaded asserts the invariants of a successfully loaded Config.
func checkLoaded(t *testing.T, c *Config) {
	t.Helper()
	if c.IdleTimeout <= 0 || c.TTL <= 0 || c.Sync.Timeout <= 0 {
		t.Fatalf("non-positive duration: idle %v ttl %v sync %v", c.IdleTimeout, c.TTL, c.Sync.Timeout)
	}
	generic, _ := c.Setting("workRoot")
	for _, wr := range []string{generic.Value, c.Coder.WorkRoot} {
		if !path.IsAbs(wr) || path.Clean(wr) != wr || strings.IndexFunc(wr, func(r rune) bool { return !workRootChar(r) }) >= 0 {
			t.Fatalf("work root %q is not a clean safe absolute path", wr)
		}
	}
	if c.Provider == "coder" && tooBroadRoots[c.Coder.WorkRoot] {
		t.Fatalf("coder work root %q is too broad", c.Coder.WorkRoot)
	}
	if p := c.Coder.WorkspacePrefix; !prefixChars.MatchString(p) || !strings.HasSuffix(p, "-") || strings.Contains(p, "--") || len(p) > MaxWorkspacePrefixLen {
		t.Fatalf("workspace prefix %q", p)
	}
	switch c.Coder.Wait {
	case "yes", "no", "auto":
	default:
		t.Fatalf("wait %q", c.Coder.Wait)
	}
	if c.Coder.CLIPath == "" {
		t.Fatal("empty coder cli path")
	}
	for _, p := range c.Coder.Parameters {
		if name, _, ok := strings.Cut(p, "="); !ok || name == "" {
			t.Fatalf("parameter %q", p)
		}
	}
	for _, e := range c.Env.Allow {
		if !envName.MatchString(strings.TrimSuffix(e, "*")) {
			t.Fatalf("env allow entry %q", e)
		}
	}
	if c.Sync.WarnFiles < 0 || c.Sync.FailFiles < 0 || c.Sync.WarnBytes < 0 || c.Sync.FailBytes < 0 {
		t.Fatal("negative sync limit")
	}
}
