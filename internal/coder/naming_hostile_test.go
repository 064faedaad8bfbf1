package coder

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// hostileValues: quotes, substitutions, newlines, traversal, unicode, NUL,
// option-looking words and a 10 KB string.
func hostileValues(canary string) []string {
	return []string{
		"plain",
		`it's "quoted"`,
		"$(touch " + canary + ")",
		"`touch " + canary + "`",
		"${HOME}",
		"; touch " + canary,
		"a && touch " + canary,
		"x | tee " + canary,
		"line1\nline2",
		"cr\rlf",
		"\ttabbed\t",
		"../../etc/passwd",
		"/abs/../../x",
		"--help",
		"-rf",
		"--template=evil",
		"日本語",
		"\u202eevil\u202c",
		"Kelvin \u212a",
		"\xff\xfe",
		"a\x00b",
		"",
		"   ",
		"*",
		"~",
		strings.Repeat("a", 10*1024),
		strings.Repeat("-", 10*1024),
	}
}

// TestWorkspaceNameHostile: hostile slugs, prefixes and lease IDs give a
// valid Coder name or an exit-2 error, never a panic or an unsafe name.
func TestWorkspaceNameHostile(t *testing.T) {
	vals := hostileValues("/nonexistent/canary")
	for _, slug := range vals {
		for _, id := range []string{"cbx_0123456789ab", slug} {
			name, err := UniqueWorkspaceName("crabbox-", slug, id)
			checkNameResult(t, "UniqueWorkspaceName(slug "+quoteTrunc(slug)+")", name, err)
			name, err = WorkspaceName("crabbox-", slug, id)
			checkNameResult(t, "WorkspaceName(slug "+quoteTrunc(slug)+")", name, err)
		}
		name, err := WorkspaceName(slug, "blue-crab", "cbx_0123456789ab")
		checkNameResult(t, "WorkspaceName(prefix "+quoteTrunc(slug)+")", name, err)
		name, err = UniqueWorkspaceName(slug, slug, slug)
		checkNameResult(t, "UniqueWorkspaceName(all "+quoteTrunc(slug)+")", name, err)
	}
}

func quoteTrunc(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "\n", `\n`), "\x00", `\0`)
}

func checkNameResult(t *testing.T, what, name string, err error) {
	t.Helper()
	if err != nil {
		if exitcode.Code(err) != exitcode.Usage {
			t.Errorf("%s: error %v has exit %d, want 2", what, err, exitcode.Code(err))
		}
		return
	}
	if checkName(name) != nil {
		t.Errorf("%s = %q: not a valid Coder name", what, name)
	}
}

// TestCreateArgsHostileViaConfig: hostile template, preset, parameter and
// rich-parameter-file values set as flags are refused by config.Load with
// exit 2 or reach a real program as single, literal argv words (a script
// standing in for coder echoes its argv NUL-separated); no shell is ever
// involved, so nothing in them runs.
func TestCreateArgsHostileViaConfig(t *testing.T) {
	dir := t.TempDir()
	canary := filepath.Join(dir, "pwned")
	fakeCoder := filepath.Join(dir, "coder")
	argvOut := filepath.Join(dir, "argv")
	script := "#!/bin/sh\nprintf '%s\\0' \"$@\" > " + "'" + argvOut + "'\n"
	if err := os.WriteFile(fakeCoder, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	env := config.MapEnv(map[string]string{"HOME": home})
	c := &Client{Runner: execx.OS{}, CLI: fakeCoder}
	const name = "crabbox-blue-crab-0a1b2c"

	for _, v := range hostileValues(canary) {
		for _, flag := range []string{"coder-template", "coder-preset", "coder-parameter", "coder-rich-parameter-file"} {
			flags := map[string]string{"coder-template": "go-dev", flag: v}
			if flag == "coder-parameter" {
				flags[flag] = "p=" + v
			}
			cfg, err := config.Load(config.LoadOptions{Env: env, Flags: flags})
			if err != nil {
				if exitcode.Code(err) != exitcode.Usage {
					t.Errorf("--%s %s: error %v has exit %d, want 2", flag, quoteTrunc(v), err, exitcode.Code(err))
				}
				continue
			}
			o := CreateOptions{
				Template: cfg.Coder.Template, Preset: cfg.Coder.Preset,
				Parameters: cfg.Coder.Parameters, RichParameterFile: cfg.Coder.RichParameterFile,
			}
			want := CreateArgs(name, o)
			// Every configured value is exactly one argv word.
			wantWord := map[string]string{
				"coder-template": o.Template, "coder-preset": o.Preset,
				"coder-rich-parameter-file": o.RichParameterFile,
			}
			if flag == "coder-parameter" && len(o.Parameters) > 0 {
				wantWord[flag] = o.Parameters[len(o.Parameters)-1]
			}
			if w := strings.TrimSpace(wantWord[flag]); w != "" && !contains(want, w) {
				t.Errorf("--%s %s: value not one argv word in %q", flag, quoteTrunc(v), want)
			}
			if strings.TrimSpace(o.Template) == "" {
				continue
			}
			os.Remove(argvOut)
			if err := c.Create(context.Background(), name, o); err != nil {
				if strings.ContainsRune(strings.Join(want, ""), 0) {
					continue // cannot be an argv word at all; config must refuse it (checked below)
				}
				t.Errorf("--%s %s: Create: %v", flag, quoteTrunc(v), err)
				continue
			}
			b, err := os.ReadFile(argvOut)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
			if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
				t.Errorf("--%s %s: program saw %q, want %q", flag, quoteTrunc(v), got, want)
			}
		}
	}
	if _, err := os.Stat(canary); err == nil {
		t.Fatal("a hostile config value was executed")
	}
}

// TestConfigRefusesNULValues: a NUL (YAML "\0") in any string setting is
// refused with exit 2: it could never reach coder or the remote literally.
func TestConfigRefusesNULValues(t *testing.T) {
	repo := t.TempDir()
	for _, y := range []string{
		"coder:\n  template: \"go\\0dev\"\n",
		"coder:\n  preset: \"a\\0\"\n",
		"coder:\n  parameters: [\"a=\\0\"]\n",
		"coder:\n  richParameterFile: \"/x\\0y\"\n",
		"coder:\n  cliPath: \"coder\\0\"\n",
		"coder:\n  workRoot: \"/home/coder/\\0\"\n",
		"sync:\n  exclude: [\"a\\0b\"]\n",
	} {
		if err := os.WriteFile(filepath.Join(repo, "crabbox.yaml"), []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := config.Load(config.LoadOptions{Env: config.MapEnv(map[string]string{"HOME": t.TempDir()}), RepoRoot: repo})
		if exitcode.Code(err) != exitcode.Usage {
			t.Errorf("%q: err %v, want exit 2", y, err)
		}
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
