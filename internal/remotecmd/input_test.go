package remotecmd

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/envfwd"
)

// runParams renders p and runs it under bash -c as sshd would, its stdin
// being the rendered header followed by extra (the user's input).
func runParams(t *testing.T, p Params, extra []byte, env []string) (Command, string, string, int) {
	t.Helper()
	if p.RunID == "" {
		p.RunID = testRunID
	}
	c := Render(p)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", c.Line)
	cmd.Env = env
	if cmd.Env == nil {
		cmd.Env = bashEnv(t)
	}
	cmd.Dir = t.TempDir()
	cmd.Stdin = io.MultiReader(strings.NewReader(c.Stdin), bytes.NewReader(extra))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("bash: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the remote command did not end: %s", errb.String())
	}
	return c, out.String(), errb.String(), code
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// With ForwardStdin the command reads exactly the bytes after the header
// (binary, NULs included) up to EOF, with the forwarded environment; without
// it the same bytes are never seen (stdin is /dev/null).
func TestRenderForwardStdin(t *testing.T) {
	needBash(t)
	payload := randomBytes(t, 3<<20)
	sum := sha256.Sum256(payload)
	want := hex.EncodeToString(sum[:])
	env := envfwd.Render(map[string]string{"FWD_VAR": "it's forwarded"})
	for _, tc := range []struct {
		name    string
		forward bool
		want    string
	}{
		{"forwarded", true, want + " " + "it's forwarded"},
		{"dev null", false, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" + " " + "it's forwarded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wd := filepath.Join(t.TempDir(), "work")
			argv := []string{"sh", "-c", `s=$(sha256sum | cut -d' ' -f1); printf '%s %s' "$s" "$FWD_VAR"`}
			_, out, errOut, code := runParams(t, Params{Workdir: wd, Argv: argv, Env: env, ForwardStdin: tc.forward}, payload, nil)
			if code != 0 || out != tc.want {
				t.Fatalf("exit %d stdout %q stderr %q; want %q", code, out, errOut, tc.want)
			}
		})
	}
}

// A command fed by stdin that does not read it all still ends; one at
// EOF ends at once.
func TestRenderForwardStdinEOFAndUnread(t *testing.T) {
	needBash(t)
	wd := filepath.Join(t.TempDir(), "work")
	_, out, _, code := runParams(t, Params{Workdir: wd, Argv: []string{"cat"}, ForwardStdin: true}, nil, nil)
	if code != 0 || out != "" {
		t.Fatalf("cat at EOF: exit %d stdout %q", code, out)
	}
	_, out, _, code = runParams(t, Params{Workdir: wd, Argv: []string{"head", "-c", "3"}, ForwardStdin: true}, []byte("abcdefgh"), nil)
	if code != 0 || out != "abc" {
		t.Fatalf("head -c 3: exit %d stdout %q", code, out)
	}
}

// The login shell's profile reads /dev/null: it cannot eat the command's
// input (positive control: the profile ran).
func TestRenderForwardStdinProfileCannotConsume(t *testing.T) {
	needBash(t)
	home := t.TempDir()
	eaten := filepath.Join(home, "eaten")
	if err := os.WriteFile(filepath.Join(home, ".bash_profile"), []byte("cat > "+eaten+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "LANG=C"}
	wd := filepath.Join(t.TempDir(), "work")
	_, out, errOut, code := runParams(t, Params{Workdir: wd, Argv: []string{"cat"}, ForwardStdin: true}, []byte("for the command"), env)
	if code != 0 || out != "for the command" {
		t.Fatalf("exit %d stdout %q stderr %q", code, out, errOut)
	}
	b, err := os.ReadFile(eaten)
	if err != nil {
		t.Fatalf("the profile did not run: %v", err)
	}
	if len(b) != 0 {
		t.Errorf("the profile read %q of the command's input", b)
	}
}

// A user script: uploaded under .crabbox/scripts/ (0600, named by its
// content), odd characters in the body and the arguments arrive intact,
// $0 is the upload, it runs in the command's directory, the forwarded
// environment is set, and a 1 MB script works.
func TestRenderUserScript(t *testing.T) {
	needBash(t)
	base := t.TempDir()
	canary := filepath.Join(base, "pwned")
	wd := filepath.Join(base, "it's a $(dir)")
	body := "#comment with 'quotes' \"dq\" `bt` $(touch " + canary + ") \\ ✓\n" +
		"printf '%s\\n' \"$0\" \"$PWD\" \"$FWD_VAR\" \"$#\"\n" +
		"for a in \"$@\"; do printf '[%s]' \"$a\"; done\n" +
		": '" + strings.Repeat("x", 1<<20) + "'\n"
	args := []string{"", "two words", "it's", "$(touch " + canary + ")", "line1\nline2", "-n"}
	env := envfwd.Render(map[string]string{"FWD_VAR": "v$1"})
	if err := os.MkdirAll(filepath.Join(wd, "sub"), 0o755); err != nil { // (the sync makes it)
		t.Fatal(err)
	}
	c, out, errOut, code := runParams(t, Params{Workdir: wd, Subdir: "sub", Argv: args, Env: env, UserScript: &UserScript{Body: body}}, nil, nil)
	if code != 0 {
		t.Fatalf("exit %d stderr %q", code, errOut)
	}
	lines := strings.SplitN(out, "\n", 5)
	if len(lines) < 5 {
		t.Fatalf("stdout %q", out)
	}
	if lines[0] != c.ScriptFile || !strings.HasPrefix(c.ScriptFile, filepath.Join(wd, ".crabbox", "scripts")+"/") {
		t.Errorf("$0 %q, script file %q", lines[0], c.ScriptFile)
	}
	if lines[1] != filepath.Join(wd, "sub") || lines[2] != "v$1" || lines[3] != "6" {
		t.Errorf("pwd/env/argc lines %q", lines[:4])
	}
	if want := "[][two words][it's][$(touch " + canary + ")][line1\nline2][-n]"; lines[4] != want {
		t.Errorf("args %q, want %q", lines[4], want)
	}
	if _, err := os.Stat(canary); err == nil {
		t.Error("something in the script or its arguments was executed")
	}
	got, err := os.ReadFile(c.ScriptFile)
	if err != nil || string(got) != body {
		t.Fatalf("uploaded script differs (%v)", err)
	}
	if st, _ := os.Stat(c.ScriptFile); st.Mode().Perm() != 0o600 {
		t.Errorf("script mode %v", st.Mode())
	}
	left, _ := filepath.Glob(filepath.Join(wd, ".crabbox", "scripts", "*.tmp"))
	if len(left) != 0 {
		t.Errorf("temporary uploads left: %q", left)
	}
	small := Render(Params{Workdir: wd, Subdir: "sub", RunID: testRunID, Env: env, UserScript: &UserScript{Body: "true\n"}})
	if d := len(c.Line) - len(small.Line); d > 20 { // only the lengths' digits may differ
		t.Errorf("command line grows by %d bytes with the script and its arguments: they must travel on stdin", d)
	}
}

// A script with a shebang runs under its interpreter (#!/bin/cat prints
// the script itself); the same script without runs under bash.
func TestRenderUserScriptShebang(t *testing.T) {
	needBash(t)
	wd := filepath.Join(t.TempDir(), "work")
	body := "#!/bin/cat\necho not run by bash\n"
	_, out, errOut, code := runParams(t, Params{Workdir: wd, UserScript: &UserScript{Body: body}}, nil, nil)
	if code != 0 || out != body {
		t.Fatalf("shebang: exit %d stdout %q stderr %q", code, out, errOut)
	}
	_, out, _, code = runParams(t, Params{Workdir: wd, UserScript: &UserScript{Body: "echo by bash $BASH_VERSION\n"}}, nil, nil)
	if code != 0 || !strings.HasPrefix(out, "by bash ") || out == "by bash \n" {
		t.Fatalf("no shebang: exit %d stdout %q", code, out)
	}
}

// A user script's exit code is the command's, and it can read forwarded
// stdin.
func TestRenderUserScriptExitAndStdin(t *testing.T) {
	needBash(t)
	wd := filepath.Join(t.TempDir(), "work")
	_, out, _, code := runParams(t, Params{Workdir: wd, Argv: []string{"7"}, ForwardStdin: true,
		UserScript: &UserScript{Body: "tr a-z A-Z; exit \"$1\"\n"}}, []byte("shout"), nil)
	if code != 7 || out != "SHOUT" {
		t.Fatalf("exit %d stdout %q", code, out)
	}
}
