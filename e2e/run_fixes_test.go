//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A command's own exit 255 is passed through and recorded as 255; ssh
// exits 255 for its own failures too, and only a real tunnel failure is
// exit 7 (TestFaultTunnelAndStop drops the tunnel mid-command).
func TestRunExit255PassesThrough(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := w.warmup("--slug", "e2e-exit255")
	for _, tc := range []struct {
		name string
		argv []string
	}{
		{"sh-exit-255", []string{"sh", "-c", "echo before; exit 255"}},
		{"perl-die", []string{"perl", "-e", "print qq(before\\n); die qq(boom\\n)"}},
		{"shell-mode", []string{"--shell", "--", "echo before; exit 255"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"run", "--id", l.id}, tc.argv...)
			if tc.argv[0] != "--shell" {
				args = append([]string{"run", "--id", l.id, "--"}, tc.argv...)
			}
			r := w.crabbox(args...)
			// Positive control: the command really ran.
			if !strings.Contains(r.stdout, "before") {
				t.Fatalf("command did not run: %q\n%s", r.stdout, r.stderr)
			}
			wantCode(t, r, 255, tc.name)
			if strings.Contains(r.stderr, "tunnel dropped") || strings.Contains(r.stderr, "ssh transport") {
				t.Errorf("255 reported as a transport failure:\n%s", r.stderr)
			}
			id := runID(t, r)
			h := w.history("--lease", l.id)
			if len(h) == 0 || h[0].ID != id || h[0].ExitCode == nil || *h[0].ExitCode != 255 || h[0].State != "failed" {
				t.Errorf("history = %+v, want %s failed with 255", h, id)
			}
		})
	}
	// The next run is unaffected (the exit file was consumed).
	if r := w.must("run", "--id", l.id, "--", "true"); strings.Contains(r.stderr, "warning") {
		t.Errorf("warnings after a 255 run:\n%s", r.stderr)
	}
}

// SIGHUP (the terminal closed) and SIGTERM are handled like Ctrl-C: exit
// 130, the run recorded interrupted, the remote command stopped and the
// one-shot workspace released.
func TestRunHangupReleasesOneShot(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			marker := "crabbox-e2e-hup-" + strconv.Itoa(int(sig)) + "-" + time.Now().Format("150405.000")
			p := w.start("", nil, "run", "--", "sh", "-c", "echo started; exec sleep 300 # "+marker)
			waitUntil(t, 2*time.Minute, "the command to start", p, func() bool {
				return strings.Contains(p.out.String(), "started") && procCmdlinesContaining(marker) > 0
			})
			m := workspaceRe.FindStringSubmatch(p.errb.String())
			if m == nil {
				t.Fatalf("no provisioning line:\n%s", p.errb.String())
			}
			t.Cleanup(func() { w.deleteWorkspace(m[2]) })
			p.cmd.Process.Signal(sig)
			r := p.wait(2 * time.Minute)
			wantCode(t, r, 130, "run after "+sig.String())
			wantStderr(t, r, "lease cleanup stopped=true")
			if n := procCmdlinesContaining(marker); n != 0 {
				t.Errorf("remote command still running (%d processes)", n)
			}
			if row := w.coderRow(m[2]); row == nil || row.Status != "stopped" {
				t.Errorf("one-shot workspace not released: %+v", row)
			}
			if h := w.history(); len(h) != 1 || h[0].State != "interrupted" {
				t.Errorf("history = %+v", h)
			}
			if w.hasClaim(m[1]) {
				t.Errorf("claim %s left behind", m[1])
			}
		})
	}
}

// A command line over the OS single-argument limit (1,400 args x 100 B):
// the argv travels on stdin, so it runs, intact.
func TestRunLongCommandLine(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := w.warmup("--slug", "e2e-longargv")
	args := []string{"run", "--id", l.id, "--", "bash", "-c", `n=0; for a in "$@"; do [ ${#a} -eq 100 ] && n=$((n+1)); done; echo "n=$n"`, "x"}
	for i := 0; i < 1400; i++ {
		args = append(args, strings.Repeat(strconv.Itoa(i%10), 100))
	}
	r := w.crabbox(args...)
	wantCode(t, r, 0, "run with a 140 KB command line")
	if !strings.Contains(r.stdout, "n=1400") {
		t.Errorf("stdout = %q", r.stdout)
	}
}

// --junit never follows a symlink out of the workdir: the linked file's
// content is not read (its suite never shows in results); a report
// inside the workdir is collected (positive control).
func TestRunJUnitSymlinkOutside(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := w.warmup("--slug", "e2e-junit-link")
	outside := filepath.Join(t.TempDir(), "secret.xml")
	if err := os.WriteFile(outside, []byte(`<testsuite name="OUTSIDE-SECRET" tests="7" failures="0"><testcase name="leak"/></testsuite>`), 0o644); err != nil {
		t.Fatal(err)
	}
	good := `<testsuite name="inside" tests="1" failures="0"><testcase name="ok"/></testsuite>`
	r := w.crabbox("run", "--id", l.id, "--junit", "report.xml", "--junit", "good.xml", "--",
		"sh", "-c", "ln -sf "+outside+" report.xml && printf '%s' '"+good+"' > good.xml")
	wantCode(t, r, 0, "run with a symlinked report")
	wantStderr(t, r, "report.xml resolves outside the workdir")
	var sum struct {
		Tests  int
		Suites int
	}
	out := w.must("results", runID(t, r), "--json").stdout
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "OUTSIDE-SECRET") || sum.Tests != 1 {
		t.Errorf("results = %s", out)
	}
}

// Run from a subdirectory runs there (printed on the run line); from the
// repository root, as before. The running-on line quotes argv like
// history.
func TestRunFromSubdirectory(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.write("tools/cfg/cfg.txt", "cfg\n")
	l := w.warmup("--slug", "e2e-subdir")
	p := w.start(filepath.Join(w.repo, "tools", "cfg"), nil, "run", "--id", l.id, "--", "sh", "-c", "pwd; cat cfg.txt")
	r := p.wait(cmdTimeout)
	wantCode(t, r, 0, "run from tools/cfg")
	if !strings.HasSuffix(strings.Split(r.stdout, "\n")[0], "/demo-repo/tools/cfg") || !strings.Contains(r.stdout, "cfg\n") {
		t.Errorf("stdout = %q", r.stdout)
	}
	wantStderr(t, r, " cwd=tools/cfg\n", "running on "+l.workspace+" sh -c 'pwd; cat cfg.txt'\n")
	r = w.must("run", "--id", l.id, "--", "pwd")
	if !strings.HasSuffix(strings.TrimSpace(r.stdout), "/demo-repo") || strings.Contains(r.stderr, "cwd=") {
		t.Errorf("from the root: stdout %q\n%s", r.stdout, r.stderr)
	}
}

// A forwarded variable is what the command sees even when the workspace's
// login profile sets it too (PATH: /etc/profile resets it on Debian).
func TestRunForwardedPathWins(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := w.warmup("--slug", "e2e-fwdpath")
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "cbx-e2e-tool"), []byte("#!/bin/sh\necho tool-ran\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := ""
	for _, e := range w.env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	r := w.crabboxEnv([]string{"PATH=" + bin + ":" + path}, "run", "--id", l.id, "--allow-env", "PATH", "--", "cbx-e2e-tool")
	wantCode(t, r, 0, "run of a tool on the forwarded PATH")
	if !strings.Contains(r.stdout, "tool-ran") {
		t.Errorf("stdout = %q", r.stdout)
	}
}
