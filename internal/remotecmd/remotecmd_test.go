package remotecmd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/envfwd"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// These tests run remoteCommand and KillScript through a real local bash,
// as sshd would (`$SHELL -c <remote>`), with the env blob on stdin.

const testRunID = "run_0123456789ab"

func needBash(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
}

// bashEnv is a minimal environment for `bash -lc`: a private HOME so no
// user profile runs.
func bashEnv(t *testing.T) []string {
	return []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH"), "LANG=C"}
}

// runRemote renders argv with remoteCommand and runs it under bash -c in a
// fresh process group with vars on stdin. It returns stdout, stderr, the
// exit code.
func runRemote(t *testing.T, workdir string, argv []string, shell bool, vars map[string]string) (string, string, int) {
	t.Helper()
	c := Render(Params{Workdir: workdir, RunID: testRunID, Argv: argv, Shell: shell, Env: envfwd.Render(vars)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", c.Line)
	cmd.Env = bashEnv(t)
	cmd.Dir = t.TempDir()
	cmd.Stdin = strings.NewReader(c.Stdin)
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
	return out.String(), errb.String(), code
}

// hostileWords are argv elements that must reach the program literally.
func hostileWords(canary string) []string {
	return []string{
		"plain",
		"",
		" ",
		"two words",
		"it's",
		`"double"`,
		`back\slash\`,
		"$(touch " + canary + ")",
		"`touch " + canary + "`",
		"${HOME}",
		"$HOME",
		"; touch " + canary,
		"&& touch " + canary,
		"| touch " + canary,
		"> " + canary,
		"line1\nline2",
		"\ttab\r\n",
		"../../etc/passwd",
		"-n",
		"--",
		"*",
		"~",
		"#comment",
		"!event",
		"'\\''",
		"日本語 ✓ \u202e rtl",
		"\x01\x7f\xff",
		strings.Repeat("A", 10*1024),
	}
}

// TestRemoteCommandArgvLiteral: every hostile argv word arrives at the
// program unchanged (printf '%s\0' echoes them back), nothing in them is
// executed (no canary file), in the workdir.
func TestRemoteCommandArgvLiteral(t *testing.T) {
	needBash(t)
	base := t.TempDir()
	canary := filepath.Join(base, "pwned")
	words := hostileWords(canary)
	for _, wd := range []string{
		filepath.Join(base, "work"),
		filepath.Join(base, "it's a $(dir) `x`"),
		filepath.Join(base, "new\nline"),
	} {
		argv := append([]string{"printf", `%s\0`}, words...)
		out, errOut, code := runRemote(t, wd, argv, false, nil)
		if code != 0 {
			t.Fatalf("workdir %q: exit %d, stderr %q", wd, code, errOut)
		}
		got := strings.Split(strings.TrimSuffix(out, "\x00"), "\x00")
		if len(got) != len(words) {
			t.Fatalf("workdir %q: got %d words, want %d: %q", wd, len(got), len(words), got)
		}
		for i := range words {
			if got[i] != words[i] {
				t.Errorf("workdir %q: word %d = %q, want %q", wd, i, got[i], words[i])
			}
		}
		if _, err := os.Stat(canary); err == nil {
			t.Fatalf("workdir %q: a hostile argv word was executed (canary exists)", wd)
		}
		// The command ran in the workdir.
		out, _, code = runRemote(t, wd, []string{"pwd"}, false, nil)
		if code != 0 || strings.TrimSuffix(out, "\n") != wd {
			t.Errorf("pwd = %q (exit %d), want %q", out, code, wd)
		}
	}
	// Each hostile word alone as the program name: it is looked up as a
	// program (127 or 126), never parsed as shell in argv mode.
	for _, w := range words {
		if w == "" || w == "--" || w == "-n" || w == "plain" || w == "*" || w == "~" {
			continue
		}
		_, _, code := runRemote(t, filepath.Join(base, "work"), []string{w, "arg"}, false, nil)
		if code == 0 {
			t.Errorf("argv[0]=%q ran successfully", w)
		}
	}
	if _, err := os.Stat(canary); err == nil {
		t.Fatal("a hostile argv[0] was executed (canary exists)")
	}
}

// TestRemoteCommandShellModeRunsScript: --shell runs the joined words as a
// script (by design); argv mode with the same words does not.
func TestRemoteCommandShellModeRunsScript(t *testing.T) {
	needBash(t)
	wd := filepath.Join(t.TempDir(), "work")
	canary := filepath.Join(t.TempDir(), "made")
	argv := []string{"echo", "$((6*7))", ";", "touch", canary}
	out, _, code := runRemote(t, wd, argv, false, nil)
	if code != 0 || out != "$((6*7)) ; touch "+canary+"\n" {
		t.Fatalf("argv mode ran shell syntax: out %q exit %d", out, code)
	}
	if _, err := os.Stat(canary); err == nil {
		t.Fatal("argv mode executed touch")
	}
	out, _, code = runRemote(t, wd, argv, true, nil)
	if code != 0 || strings.TrimSpace(out) != "42" {
		t.Fatalf("--shell: out %q exit %d", out, code)
	}
	if _, err := os.Stat(canary); err != nil {
		t.Fatalf("--shell: script did not run: %v", err)
	}
}

// TestRemoteCommandEnvFromStdin: the env blob on stdin is sourced and its
// file removed before the command starts; values keep every byte; the
// command's own stdin is /dev/null.
func TestRemoteCommandEnvFromStdin(t *testing.T) {
	needBash(t)
	wd := filepath.Join(t.TempDir(), "work")
	vars := map[string]string{
		"PLAIN":     "value",
		"QUOTES":    `it's "q" \ $HOME`,
		"SUBST":     "$(touch " + filepath.Join(wd, "pwned") + ") `id`",
		"NEWLINE":   "a\nb\n",
		"EMPTY":     "",
		"UNICODE":   "日本語 ✓",
		"LONG":      strings.Repeat("x", 10*1024),
		"CRABBOX_X": "--flag=1",
	}
	envFile := filepath.Join(wd, ".crabbox", "env", testRunID+".env")
	script := `test ! -e ` + sshx.Quote(envFile) + ` || { echo ENVFILE-STILL-THERE; exit 9; }
for n in PLAIN QUOTES SUBST NEWLINE EMPTY UNICODE LONG CRABBOX_X; do printf '%s=%s\0' "$n" "${!n}"; done
if read -r x; then echo STDIN-NOT-DEVNULL; exit 8; fi`
	out, errOut, code := runRemote(t, wd, []string{"bash", "-c", script}, false, vars)
	if code != 0 {
		t.Fatalf("exit %d: out %q stderr %q", code, out, errOut)
	}
	got := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(out, "\x00"), "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
	}
	for k, v := range vars {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if _, err := os.Stat(filepath.Join(wd, "pwned")); err == nil {
		t.Error("an env value was executed")
	}
	entries, _ := os.ReadDir(filepath.Join(wd, ".crabbox", "env"))
	if len(entries) != 0 {
		t.Errorf("env dir not empty after the run: %v", entries)
	}
	if _, err := os.Stat(filepath.Join(wd, ".crabbox", "runs", testRunID+".pid")); err == nil {
		t.Error("pid file left behind")
	}
}

// TestRemoteCommandNoEnvValuesInCommand: --allow-env values travel on
// stdin only; the rendered command holds none of them (only the length).
func TestRemoteCommandNoEnvValuesInCommand(t *testing.T) {
	vars := map[string]string{
		"SECRET_A":  "s3cr3t-value-A",
		"NPM_TOKEN": "npm_abcdefghijklmnop",
		"CI":        "true-ci-marker",
	}
	blob := envfwd.Render(vars)
	for _, shell := range []bool{false, true} {
		for _, auto := range []bool{false, true} {
			c := Render(Params{Workdir: "/home/coder/crabbox/cbx_0123456789ab/repo", RunID: testRunID,
				Argv: []string{"go", "test", "./..."}, Shell: shell, ResultsAuto: auto, Env: blob})
			remote := c.Line
			for k, v := range vars {
				if strings.Contains(remote, v) || strings.Contains(c.PIDFile, v) {
					t.Errorf("shell=%v auto=%v: value of %s on the command line: %s", shell, auto, k, remote)
				}
				if strings.Contains(remote, k) {
					t.Errorf("shell=%v auto=%v: name %s on the command line", shell, auto, k)
				}
			}
			if !strings.Contains(remote, "head -c "+strconv.Itoa(len(blob))+" ") {
				t.Errorf("env length not used: %s", remote)
			}
		}
	}
}

// TestRemoteCommandExitCodes: the command's exit code passes through.
func TestRemoteCommandExitCodes(t *testing.T) {
	needBash(t)
	wd := filepath.Join(t.TempDir(), "work")
	for _, c := range []int{0, 1, 3, 126, 130, 255} {
		for _, shell := range []bool{false, true} {
			argv := []string{"bash", "-c", "exit " + strconv.Itoa(c)}
			if shell {
				argv = []string{"exit", strconv.Itoa(c)}
			}
			_, errOut, code := runRemote(t, wd, argv, shell, nil)
			if code != c {
				t.Errorf("shell=%v: exit %d, want %d (stderr %q)", shell, code, c, errOut)
			}
		}
	}
	// Killed by a signal: 128+n.
	if _, _, code := runRemote(t, wd, []string{"bash", "-c", "kill -TERM $$"}, false, nil); code != 143 {
		t.Errorf("self-TERM: exit %d, want 143", code)
	}
	// A missing workdir parent that cannot be created: 97, nothing runs.
	if _, _, code := runRemote(t, "/proc/crabbox-no-such/work", []string{"true"}, false, nil); code != 97 {
		t.Errorf("uncreatable workdir: exit %d, want 97", code)
	}
}

// groupAlive reports whether any non-zombie process is in process group
// pgid (zombies are not counted: a container's init may not reap them).
func groupAlive(t *testing.T, pgid int) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc")
	}
	var alive []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 3 {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid && f[0] != "Z" && f[0] != "X" {
			alive = append(alive, e.Name()+":"+string(data[:i+1]))
		}
	}
	return alive
}

// TestKillCommandStopsGroup: the remote command runs in its own process
// group recorded in the pid file; KillScript, run from another shell,
// stops it and its children (TERM, then KILL for a group ignoring TERM),
// and the remote shell reports the signal exit.
func TestKillCommandStopsGroup(t *testing.T) {
	needBash(t)
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	t.Run("term", func(t *testing.T) {
		testKillGroup(t, "sleep 300 & sleep 300 & (sleep 300; true) & wait", 143)
	})
	t.Run("ignores-term", func(t *testing.T) {
		testKillGroup(t, "trap '' TERM; sleep 300 & sleep 300 & (sleep 300; true) & wait", 137)
	})
}

func testKillGroup(t *testing.T, script string, wantCode int) {
	wd := filepath.Join(t.TempDir(), "work")
	argv := []string{"bash", "-c", script}
	c := Render(Params{Workdir: wd, RunID: testRunID, Argv: argv})
	pidFile := c.PIDFile
	cmd := exec.Command("bash", "-c", c.Line)
	cmd.Env = bashEnv(t)
	cmd.Stdin = strings.NewReader(c.Stdin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})

	var pgid int
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(pidFile)
		if err == nil {
			if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && p > 0 {
				pgid = p
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid file %s never appeared", pidFile)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	if pgid == cmd.Process.Pid {
		t.Fatal("the command shares the outer shell's process group")
	}
	// Wait for the three sleeps to be in the group.
	for deadline = time.Now().Add(10 * time.Second); ; {
		n := 0
		for _, p := range groupAlive(t, pgid) {
			if strings.Contains(p, "(sleep)") {
				n++
			}
		}
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sleeps not started: %v", groupAlive(t, pgid))
		}
		time.Sleep(20 * time.Millisecond)
	}

	kill := exec.Command("bash", "-c", KillScript(pidFile))
	kill.Env = bashEnv(t)
	if out, err := kill.CombinedOutput(); err != nil {
		t.Fatalf("KillScript: %v: %s", err, out)
	}
	if left := groupAlive(t, pgid); len(left) > 0 {
		t.Fatalf("processes left in group %d after KillScript: %v", pgid, left)
	}
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != wantCode {
			t.Errorf("remote shell exit: %v, want %d", err, wantCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("remote shell did not exit after KillScript")
	}
	if _, err := os.Stat(pidFile); err == nil {
		t.Error("pid file not removed")
	}
	// A second kill (no pid file) is a no-op success.
	again := exec.Command("bash", "-c", KillScript(pidFile))
	again.Env = bashEnv(t)
	if out, err := again.CombinedOutput(); err != nil {
		t.Errorf("second KillScript: %v: %s", err, out)
	}
}

// TestKillCommandHostilePidFile: a pid file path with shell syntax is
// quoted; KillScript never executes it.
func TestKillCommandHostilePidFile(t *testing.T) {
	needBash(t)
	dir := t.TempDir()
	canary := filepath.Join(dir, "pwned")
	for _, p := range []string{
		filepath.Join(dir, "$(touch "+canary+")"),
		filepath.Join(dir, "`touch "+canary+"`"),
		filepath.Join(dir, "x'; touch "+canary+"; '"),
	} {
		cmd := exec.Command("bash", "-c", KillScript(p))
		cmd.Env = bashEnv(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("KillScript(%q): %v: %s", p, err, out)
		}
	}
	if _, err := os.Stat(canary); err == nil {
		t.Fatal("pid file path was executed")
	}
}

// FuzzRemoteCommand: for any argv and workdir, the command line is
// `... exec bash -lc <inner> bash <script file>` as literal words (checked
// with sshx.Split, which performs no expansion), its length does not grow
// with the argv, the argv travels in the script on stdin after the env,
// and in argv mode the script splits back into exactly the argv.
func FuzzRemoteCommand(f *testing.F) {
	f.Add("/home/coder/crabbox/cbx_0123456789ab/repo", "go\x00test\x00./...", false, false)
	f.Add("/w", "printf\x00%s\\0\x00$(touch x)\x00`id`\x00a'b", false, true)
	f.Add("/w/it's", "make build && make test", true, false)
	f.Add("/w", "\n;|&<>()", false, false)
	f.Add("/w/日本", "--\x00-n\x00\x00 ", true, true)
	f.Fuzz(func(t *testing.T, workdir, joined string, shell, auto bool) {
		if strings.ContainsRune(workdir, 0) {
			return // remote paths cannot hold NUL
		}
		argv := strings.Split(joined, "\x00")
		env := "A='1'\n"
		c := Render(Params{Workdir: workdir, RunID: testRunID, Argv: argv, Shell: shell, ResultsAuto: auto, Env: env})
		if !strings.HasSuffix(c.PIDFile, ".crabbox/runs/"+testRunID+".pid") {
			t.Fatalf("pid file %q", c.PIDFile)
		}
		short := Render(Params{Workdir: workdir, RunID: testRunID, Argv: []string{"x"}, Shell: shell, ResultsAuto: auto, Env: env})
		if len(c.Line)-len(short.Line) > 20 { // only the script length's digits may differ
			t.Fatalf("command line grows with the argv: %d vs %d bytes", len(c.Line), len(short.Line))
		}
		i := strings.LastIndex(c.Line, "; exec bash -lc '")
		if i < 0 {
			t.Fatalf("no exec bash -lc in %q", c.Line)
		}
		words, err := sshx.Split(c.Line[i+2:])
		if err != nil {
			t.Fatalf("tail does not split: %v\n%s", err, c.Line[i+2:])
		}
		if len(words) != 7 || words[0] != "exec" || words[1] != "bash" || words[2] != "-lc" || words[4] != "bash" ||
			!strings.HasSuffix(words[5], "/.crabbox/runs/"+testRunID+".sh") || !strings.HasSuffix(words[6], "/.crabbox/env/"+testRunID+".env") {
			t.Fatalf("words %q", words)
		}
		if !strings.Contains(words[3], `; bash "$1" </dev/null & p=$!;`) {
			t.Fatalf("inner script %q", words[3])
		}
		script, ok := strings.CutPrefix(c.Stdin, env)
		if !ok {
			t.Fatalf("stdin does not start with the env file: %q", c.Stdin)
		}
		if shell {
			if script != strings.Join(argv, " ")+"\n" {
				t.Fatalf("shell script %q", script)
			}
			return
		}
		body, ok := strings.CutPrefix(script, "exec ")
		if !ok {
			t.Fatalf("argv script %q", script)
		}
		got, err := sshx.Split(body)
		if err != nil || len(got) != len(argv) {
			t.Fatalf("script %q splits into %q (%v), want %q", body, got, err, argv)
		}
		for k := range argv {
			if got[k] != argv[k] {
				t.Fatalf("argv word %d = %q, want %q", k, got[k], argv[k])
			}
		}
	})
}
