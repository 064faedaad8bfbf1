package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/iostreams"
)

type testEnv struct {
	f    *Factory
	fake *execx.Fake
	repo string
	home string
	vars map[string]string
}

// newTestEnv isolates HOME/XDG dirs and answers `git rev-parse` with a
// scratch repo; every other external call fails loudly.
func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	home := t.TempDir()
	repo := filepath.Join(home, "repo")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"HOME":            home,
		"XDG_CONFIG_HOME": filepath.Join(home, "cfg"),
		"XDG_STATE_HOME":  filepath.Join(home, "state"),
	}
	fake := execx.NewFake().On("git rev-parse --show-toplevel", execx.Reply{Stdout: repo + "\n"})
	ios, _, _, _ := iostreams.Test()
	te := &testEnv{fake: fake, repo: repo, home: home, vars: vars}
	te.f = &Factory{
		IO:     ios,
		Env:    config.MapEnv(vars),
		Runner: fake,
		Now:    time.Now,
		Getwd:  func() (string, error) { return repo, nil },
	}
	return te
}

func (te *testEnv) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ios, _, out, errb := iostreams.Test()
	te.f.IO = ios
	code := Main(context.Background(), args, te.f)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Each of the five layers sets coder.preset in turn; config show --json
// reports the value and the layer that won.
func TestConfigShowReportsWinningLayer(t *testing.T) {
	te := newTestEnv(t)
	show := func(args ...string) (value, source string) {
		t.Helper()
		code, out, errOut := te.run(t, append([]string{"config", "show", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("config show: exit %d: %s", code, errOut)
		}
		var v struct {
			Settings []struct{ Key, Value, Source string }
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatal(err)
		}
		for _, s := range v.Settings {
			if s.Key == "coder.preset" {
				return s.Value, s.Source
			}
		}
		t.Fatalf("coder.preset missing from %s", out)
		return "", ""
	}
	check := func(wantV, wantS string, args ...string) {
		t.Helper()
		if v, s := show(args...); v != wantV || s != wantS {
			t.Errorf("coder.preset = %q from %q, want %q from %q", v, s, wantV, wantS)
		}
	}
	check("", "default")
	writeFile(t, filepath.Join(te.home, "cfg", "crabbox", "config.yaml"), "coder:\n  preset: from-user\n")
	check("from-user", "user")
	writeFile(t, filepath.Join(te.repo, "crabbox.yaml"), "coder:\n  preset: from-repo\n")
	check("from-repo", "repo")
	te.vars["CRABBOX_CODER_PRESET"] = "from-env"
	check("from-env", "env")
	check("from-flag", "flag", "--coder-preset", "from-flag")
}

// Invalid configuration exits 2 naming the field, before any Coder call.
func TestInvalidConfigExits2WithoutCoderCall(t *testing.T) {
	cases := []struct {
		name, repoYAML string
		args           []string
		want           string
	}{
		{"wait", "coder:\n  wait: maybe\n", nil, "coder.wait"},
		{"workRoot", "coder:\n  workRoot: /usr\n", nil, "coder.workRoot"},
		{"prefix", "coder:\n  workspacePrefix: \"--\"\n", nil, "coder.workspacePrefix"},
		{"class flag", "", []string{"--class", "beast"}, "--class is not supported for provider=coder"},
		{"parameter", "coder:\n  parameters: [novalue]\n", nil, "coder.parameters"},
		{"parameter flag", "", []string{"--coder-parameter", "x"}, "--coder-parameter"},
	}
	for _, tc := range cases {
		for _, command := range [][]string{{"warmup"}, {"status", "x"}, {"stop", "x"}, {"doctor"}, {"list"}, {"cleanup", "--dry-run"}} {
			t.Run(tc.name+"/"+command[0], func(t *testing.T) {
				te := newTestEnv(t)
				writeFile(t, filepath.Join(te.repo, "crabbox.yaml"), "provider: coder\n"+tc.repoYAML)
				args := append(append([]string{}, command...), tc.args...)
				code, _, errOut := te.run(t, args...)
				if code != 2 || !strings.Contains(errOut, tc.want) {
					t.Errorf("exit %d, stderr %q; want 2 naming %q", code, errOut, tc.want)
				}
				for _, c := range te.fake.Calls() {
					if c.Name != "git" {
						t.Errorf("unexpected call %s", c.Argv())
					}
				}
			})
		}
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"no-such-command"},
		{"status", "--no-such-flag"},
		{"status", "a", "b"},
		{"status", "a", "--id", "b"},
		{"status", "--provider", "coder"},
		{"claims", "list", "extra"},
		{"warmup", "--provider", "coder", "--slug", "!!!"},
		{"warmup", "--provider", "coder", "--lease-id", "cbx_000000000000"},
		{"list"}, // no provider selected
	} {
		te := newTestEnv(t)
		code, _, errOut := te.run(t, args...)
		if code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", args, code, errOut)
		}
	}
}

func TestVersion(t *testing.T) {
	te := newTestEnv(t)
	code, out, _ := te.run(t, "version")
	if code != 0 || !strings.HasPrefix(out, "crabbox ") {
		t.Errorf("version: %d %q", code, out)
	}
	if len(te.fake.Calls()) != 0 {
		t.Errorf("version ran %v", te.fake.Argvs())
	}
}
