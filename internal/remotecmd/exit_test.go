package remotecmd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// runBash runs script under bash -c with stdin and returns stdout and the
// exit code.
func runBash(t *testing.T, script, stdin string) (string, string, int) {
	t.Helper()
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = bashEnv(t)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// TestExitFileOnlyFor255: the wrapper leaves an exit file only when the
// command itself exits 255, and ExitStatusScript reads and removes it; for
// any other code (and after a read) it answers "none".
func TestExitFileOnlyFor255(t *testing.T) {
	needBash(t)
	for _, code := range []int{0, 1, 7, 254, 255} {
		wd := filepath.Join(t.TempDir(), "work")
		c := Render(Params{Workdir: wd, RunID: testRunID, Argv: []string{"sh", "-c", "exit " + strconv.Itoa(code)}})
		if _, _, got := runBash(t, c.Line, c.Stdin); got != code {
			t.Fatalf("exit %d, want %d", got, code)
		}
		out, _, _ := runBash(t, ExitStatusScript(c.ExitFile), "")
		n, ok := ParseExitStatus(out)
		if want := code == 255; ok != want || (ok && n != 255) {
			t.Errorf("code %d: exit status answer %q -> (%d, %v)", code, out, n, ok)
		}
		if out, _, _ := runBash(t, ExitStatusScript(c.ExitFile), ""); strings.TrimSpace(out) != "none" {
			t.Errorf("code %d: exit file not removed after the read (%q)", code, out)
		}
		if _, err := os.Stat(filepath.Join(Meta(wd), "runs", testRunID+".sh")); err == nil {
			t.Errorf("code %d: script file left behind", code)
		}
	}
}

func TestParseExitStatus(t *testing.T) {
	for _, tc := range []struct {
		in   string
		code int
		ok   bool
	}{
		{"255\n", 255, true},
		{"motd noise\n255\n", 255, true},
		{"none\n", 0, false},
		{"", 0, false},
		{"-1\n", 0, false},
		{"256\n", 0, false},
	} {
		code, ok := ParseExitStatus(tc.in)
		if code != tc.code || ok != tc.ok {
			t.Errorf("ParseExitStatus(%q) = %d, %v; want %d, %v", tc.in, code, ok, tc.code, tc.ok)
		}
	}
}

// TestLongArgvNoLimit: 1,400 arguments of 100 bytes (140 KB, over
// Linux's 128 KiB single-argument limit that an ssh command line hits)
// reach the command intact; the rendered command line stays short.
func TestLongArgvNoLimit(t *testing.T) {
	needBash(t)
	argv := []string{"bash", "-c", `n=0; for a in "$@"; do [ ${#a} -eq 100 ] && n=$((n+1)); done; echo $n`, "x"}
	for i := 0; i < 1400; i++ {
		argv = append(argv, strings.Repeat(strconv.Itoa(i%10), 100))
	}
	c := Render(Params{Workdir: filepath.Join(t.TempDir(), "work"), RunID: testRunID, Argv: argv})
	if len(c.Line) > 2048 {
		t.Fatalf("command line is %d bytes", len(c.Line))
	}
	out, errOut, code := runBash(t, c.Line, c.Stdin)
	if code != 0 || strings.TrimSpace(out) != "1400" {
		t.Fatalf("exit %d, out %q, stderr %q", code, out, errOut)
	}
}

// TestSubdir: the command runs in Subdir below the workdir; a missing one
// is exit 97 with a message, and nothing runs.
func TestSubdir(t *testing.T) {
	needBash(t)
	wd := filepath.Join(t.TempDir(), "work")
	if err := os.MkdirAll(filepath.Join(wd, "tools", "cfg"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := Render(Params{Workdir: wd, Subdir: "tools/cfg", RunID: testRunID, Argv: []string{"pwd"}})
	if out, _, code := runBash(t, c.Line, c.Stdin); code != 0 || strings.TrimSpace(out) != filepath.Join(wd, "tools", "cfg") {
		t.Fatalf("pwd = %q exit %d", out, code)
	}
	c = Render(Params{Workdir: wd, Subdir: "nope", RunID: testRunID, Argv: []string{"echo", "ran"}})
	out, errOut, code := runBash(t, c.Line, c.Stdin)
	if code != 97 || strings.Contains(out, "ran") || !strings.Contains(errOut, "cannot enter") {
		t.Fatalf("missing subdir: exit %d out %q stderr %q", code, out, errOut)
	}
}

// TestJUnitScriptStaysInWorkdir: reports are collected by glob and from
// the command's directory; a report that is a symlink out of the workdir,
// or a path escaping it, is skipped with a note and never read.
func TestJUnitScriptStaysInWorkdir(t *testing.T) {
	needBash(t)
	base := t.TempDir()
	wd := filepath.Join(base, "work")
	secret := filepath.Join(base, "secret.xml")
	write := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(secret, "SECRET-CONTENT")
	write(filepath.Join(wd, "sub", "a.xml"), "<a/>")
	write(filepath.Join(wd, "sub", "b.xml"), "<b/>")
	write(filepath.Join(wd, "top.xml"), "<top/>")
	if err := os.Symlink(secret, filepath.Join(wd, "sub", "evil.xml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(wd, "top.xml"), filepath.Join(wd, "sub", "inside.xml")); err != nil {
		t.Fatal(err)
	}
	script := JUnitScript(wd, filepath.Join(wd, "sub"), testRunID, []string{"*.xml", "../top.xml", "../../secret.xml", secret, "it's $(x).xml"}, false)
	out, errOut, code := runBash(t, script, "")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Contains(out, "SECRET-CONTENT") {
		t.Fatalf("read a file outside the workdir: %q", out)
	}
	for _, want := range []string{"a.xml\x004\x00<a/>", "b.xml\x004\x00<b/>", "inside.xml\x006\x00<top/>", "../top.xml\x006\x00<top/>"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q: %q", want, out)
		}
	}
	if strings.Count(errOut, "resolves outside the workdir") != 3 { // evil.xml, ../../secret.xml, the absolute path
		t.Errorf("stderr = %q", errOut)
	}
}

// TestForwardedEnvWinsOverProfile: the login shell's profile runs first,
// then the forwarded env file, so a forwarded PATH (or any variable the
// profile also sets) is what the command sees; the profile's other
// settings stay.
func TestForwardedEnvWinsOverProfile(t *testing.T) {
	needBash(t)
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, ".bash_profile"), []byte("export CBX_A=profile CBX_B=profile-only\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Render(Params{Workdir: filepath.Join(t.TempDir(), "work"), RunID: testRunID,
		Argv: []string{"sh", "-c", `echo "$CBX_A $CBX_B"`}, Env: "export CBX_A='forwarded'\n"})
	cmd := exec.Command("bash", "-c", c.Line)
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "LANG=C"}
	cmd.Stdin = strings.NewReader(c.Stdin)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "forwarded profile-only" {
		t.Fatalf("out %q err %v", out, err)
	}
}
