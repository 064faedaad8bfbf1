package sshx

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestArgvCommand(t *testing.T) {
	tests := []struct {
		workdir string
		argv    []string
		env     string
		want    string
	}{
		{
			"/work/repo", []string{"go", "test", "./..."}, "",
			`cd '/work/repo' && bash -lc 'cd '\''/work/repo'\'' && exec "$@"' bash 'go' 'test' './...'`,
		},
		{
			"/work/repo", []string{"echo", "it's", "$(id)"}, "/work/repo/.crabbox/env/run_1.env",
			`cd '/work/repo' && if [ -f '/work/repo/.crabbox/env/run_1.env' ]; then . '/work/repo/.crabbox/env/run_1.env'; fi && ` +
				`bash -lc 'cd '\''/work/repo'\'' && exec "$@"' bash 'echo' 'it'\''s' '$(id)'`,
		},
		{
			"/w/it's", []string{"true"}, "",
			`cd '/w/it'\''s' && bash -lc 'cd '\''/w/it'\''\'\'''\''s'\'' && exec "$@"' bash 'true'`,
		},
		{
			"/w", nil, "",
			`cd '/w' && bash -lc 'cd '\''/w'\'' && exec "$@"' bash`,
		},
		{
			"/w", []string{"x"}, "run.env",
			`cd '/w' && if [ -f './run.env' ]; then . './run.env'; fi && bash -lc 'cd '\''/w'\'' && exec "$@"' bash 'x'`,
		},
	}
	for _, tc := range tests {
		if got := ArgvCommand(tc.workdir, tc.argv, tc.env); got != tc.want {
			t.Errorf("ArgvCommand(%q, %q, %q)\n got %s\nwant %s", tc.workdir, tc.argv, tc.env, got, tc.want)
		}
	}
}

func TestShellCommand(t *testing.T) {
	tests := []struct{ workdir, script, env, want string }{
		{
			"/work/repo", "pnpm i && pnpm test", "",
			`cd '/work/repo' && bash -lc 'cd '\''/work/repo'\'' && pnpm i && pnpm test'`,
		},
		{
			"/work/repo", `echo "$HOME" 'x'`, "/e.env",
			`cd '/work/repo' && if [ -f '/e.env' ]; then . '/e.env'; fi && bash -lc 'cd '\''/work/repo'\'' && echo "$HOME" '\''x'\'''`,
		},
	}
	for _, tc := range tests {
		if got := ShellCommand(tc.workdir, tc.script, tc.env); got != tc.want {
			t.Errorf("ShellCommand(%q, %q, %q)\n got %s\nwant %s", tc.workdir, tc.script, tc.env, got, tc.want)
		}
	}
	if got, want := RemoteCommand("/w", []string{"a && b"}, ""), ShellCommand("/w", "a && b", ""); got != want {
		t.Errorf("RemoteCommand shell = %s", got)
	}
	if got, want := RemoteCommand("/w", []string{"a", "&&", "b"}, ""), ArgvCommand("/w", []string{"a", "&&", "b"}, ""); got != want {
		t.Errorf("RemoteCommand argv = %s", got)
	}
}

func TestNeedsShell(t *testing.T) {
	for argv, want := range map[string]bool{
		"make":              false,
		"./script.sh":       false,
		"a-b_c=d,e.f/g:h@i": false,
		"pnpm i":            true,
		"a\tb":              true,
		"a\nb":              true,
		"a&&b":              true,
		"a|b":               true,
		"a;b":               true,
		"a<b":               true,
		"a>b":               true,
		"*.go":              true,
		"$HOME":             true,
		"(x)":               true,
		"`id`":              true,
	} {
		if got := NeedsShell([]string{argv}); got != want {
			t.Errorf("NeedsShell(%q) = %v, want %v", argv, got, want)
		}
	}
	if NeedsShell([]string{"echo", "a && b"}) || NeedsShell(nil) {
		t.Error("NeedsShell is only for a single word")
	}
}

// TestRemoteCommandRealShell runs rendered commands with the local sh and
// bash, as sshd would hand them to the remote login shell.
func TestRemoteCommandRealShell(t *testing.T) {
	base := t.TempDir()
	workdir := filepath.Join(base, `work dir 'q' $(x)`)
	if err := os.Mkdir(workdir, 0o755); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir() // keep the user's profile out of bash -l
	envFile := filepath.Join(base, "env file.env")
	if err := os.WriteFile(envFile, []byte("export CRABBOX_T_VAR='v a l'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"a b", "it's", "$(echo pwned)", "`echo pwned`", "x;touch pwned", "", "line\nbreak", "ünï *"}
	argv := append([]string{"sh", "-c", `pwd; printf '%s\n' "$CRABBOX_T_VAR"; printf '<%s>\n' "$@"`, "sh"}, args...)
	var want strings.Builder
	want.WriteString(workdir + "\nv a l\n")
	for _, a := range args {
		want.WriteString("<" + a + ">\n")
	}
	for _, shell := range []string{"sh", "bash"} {
		run := func(cmdline string) string {
			t.Helper()
			cmd := exec.Command(shell, "-c", cmdline)
			cmd.Dir = "/"
			cmd.Env = append(os.Environ(), "HOME="+home, "CRABBOX_T_VAR=")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s -c %s: %v\n%s", shell, cmdline, err, out)
			}
			return string(out)
		}
		if got := run(ArgvCommand(workdir, argv, envFile)); got != want.String() {
			t.Errorf("%s argv mode printed\n%q\nwant\n%q", shell, got, want.String())
		}
		// A missing env file is skipped.
		if got := run(ArgvCommand(workdir, []string{"pwd"}, filepath.Join(base, "missing.env"))); got != workdir+"\n" {
			t.Errorf("%s with missing env file printed %q", shell, got)
		}
		if got := run(ShellCommand(workdir, `pwd && echo "$CRABBOX_T_VAR" | tr ' ' _ ; echo $((1+2))`, envFile)); got != workdir+"\nv_a_l\n3\n" {
			t.Errorf("%s shell mode printed %q", shell, got)
		}
		for _, dir := range []string{base, workdir, "/"} {
			if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
				t.Fatal("an argument was executed")
			}
		}
	}
}
