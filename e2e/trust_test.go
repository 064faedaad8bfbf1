//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An untrusted checkout's crabbox.yaml cannot run a program as the user
// (coder.cliPath), pull the user's secrets onto the workspace (env.allow
// patterns) or turn a stop into a delete (coder.deleteOnRelease). After
// `crabbox config trust` the same file takes effect; after an edit it is
// ignored again.
func TestUntrustedRepoConfig(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := w.warmup("--slug", "e2e-trust")

	// The "evil" CLI does the real job (so every command still works) and
	// leaves a marker each time it runs.
	marker := filepath.Join(t.TempDir(), "evil-ran")
	evil := filepath.Join(w.repo, "evil.sh")
	if err := os.WriteFile(evil, []byte("#!/bin/sh\necho ran >> '"+marker+"'\nexec '"+lab.Coder+"' \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	hostile := "provider: coder\ncoder:\n  template: " + lab.Template + "\n  cliPath: ./evil.sh\n  deleteOnRelease: true\nenv:\n  allow: [\"A*\", \"G*\", \"S*\", \"C*\"]\n"
	w.write("crabbox.yaml", hostile)
	secrets := []string{
		"AWS_SECRET_ACCESS_KEY=cbx-e2e-aws-" + time.Now().Format("150405.000"),
		"GITHUB_TOKEN=cbx-e2e-gh-" + time.Now().Format("150405.000"),
		// The lab's real session token: coder keeps working with it.
		"CODER_SESSION_TOKEN=" + labToken(t),
	}
	probe := `for v in AWS_SECRET_ACCESS_KEY GITHUB_TOKEN CODER_SESSION_TOKEN; do eval "x=\${$v:-}"; echo "$v=${#x}"; done`

	for _, args := range [][]string{
		{"list"},
		{"status", l.id},
		{"doctor"},
		{"ssh", l.id},
		{"run", "--id", l.id, "--", "sh", "-c", probe},
	} {
		r := w.crabboxEnv(secrets, args...)
		if r.code != 0 && args[0] != "doctor" {
			t.Errorf("crabbox %v: exit %d\n%s", args, r.code, r.stderr)
		}
		wantStderr(t, r, "ignoring coder.cliPath from "+filepath.Join(w.repo, "crabbox.yaml"), "crabbox config trust")
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("crabbox %v ran the repo's cliPath", args)
		}
		if args[0] == "run" {
			for _, s := range []string{"AWS_SECRET_ACCESS_KEY=0", "GITHUB_TOKEN=0", "CODER_SESSION_TOKEN=0"} {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("a secret reached the workspace: stdout %q", r.stdout)
				}
			}
		}
	}
	show := w.must("config", "show")
	if !strings.Contains(show.stdout, "coder.cliPath") || !strings.Contains(show.stdout, "ignored: repo (") {
		t.Errorf("config show does not mark the ignored keys:\n%s", show.stdout)
	}

	// deleteOnRelease from the untrusted file: stop stops, never deletes.
	w.crabboxEnv(nil, "stop", l.id)
	if row := w.coderRow(l.workspace); row == nil || row.Status != "stopped" {
		t.Fatalf("workspace after stop = %+v, want stopped (not deleted)", row)
	}

	// Trusted: the same file takes effect (positive control: the marker
	// appears, the env pattern applies, minus the deny-list).
	tr := w.must("config", "trust")
	if !strings.Contains(tr.stdout, "trusted "+filepath.Join(w.repo, "crabbox.yaml")+" sha256=") {
		t.Errorf("config trust: %q", tr.stdout)
	}
	l2 := w.warmup("--slug", "e2e-trust2")
	r := w.crabboxEnv(secrets, "run", "--id", l2.id, "--", "sh", "-c", probe)
	wantCode(t, r, 0, "run with the trusted config")
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("trusted cliPath did not run")
	}
	if strings.Contains(r.stderr, "ignoring ") {
		t.Errorf("trusted file still ignored:\n%s", r.stderr)
	}
	if !strings.Contains(r.stdout, "AWS_SECRET_ACCESS_KEY=") || strings.Contains(r.stdout, "AWS_SECRET_ACCESS_KEY=0") || !strings.Contains(r.stdout, "CODER_SESSION_TOKEN=0") {
		t.Errorf("trusted env.allow: stdout %q (A* forwards, the deny-list holds CODER_*)", r.stdout)
	}
	wantNotForwarded(t, r, "CODER_SESSION_TOKEN")

	// Edited: untrusted again.
	os.Remove(marker)
	w.write("crabbox.yaml", hostile+"# edited\n")
	r = w.crabboxEnv(secrets, "status", l2.id)
	wantStderr(t, r, "ignoring coder.cliPath")
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("edited file's cliPath ran")
	}
	w.crabbox("stop", l2.id)
}

// wantNotForwarded checks the "env: not forwarding" note names name.
func wantNotForwarded(t *testing.T, r result, name string) {
	t.Helper()
	for _, line := range strings.Split(r.stderr, "\n") {
		if rest, ok := strings.CutPrefix(line, "env: not forwarding "); ok {
			names, _, _ := strings.Cut(rest, " ")
			for _, n := range strings.Split(names, ",") {
				if n == name {
					return
				}
			}
		}
	}
	t.Errorf("no note that %s was not forwarded:\n%s", name, r.stderr)
}

// --allow-env 'CODER_*' never forwards the Coder session token; naming it
// exactly does, with a warning.
func TestEnvDenyList(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := w.warmup("--slug", "e2e-deny")
	tok := []string{"CODER_SESSION_TOKEN=" + labToken(t)}
	probe := `echo "len=${#CODER_SESSION_TOKEN}"`
	r := w.crabboxEnv(tok, "run", "--id", l.id, "--allow-env", "CODER_*", "--", "sh", "-c", probe)
	wantCode(t, r, 0, "run with CODER_*")
	if !strings.Contains(r.stdout, "len=0") {
		t.Errorf("CODER_* forwarded the session token: %q", r.stdout)
	}
	wantNotForwarded(t, r, "CODER_SESSION_TOKEN")
	r = w.crabboxEnv(tok, "run", "--id", l.id, "--allow-env", "CODER_SESSION_TOKEN", "--", "sh", "-c", probe)
	wantCode(t, r, 0, "run naming CODER_SESSION_TOKEN")
	if strings.Contains(r.stdout, "len=0") || !strings.Contains(r.stdout, "len=") {
		t.Errorf("exact name not forwarded: %q", r.stdout)
	}
	wantStderr(t, r, "warning: forwarding CODER_SESSION_TOKEN")
	w.must("stop", l.id)
}

// labToken is the lab admin's real Coder session token.
func labToken(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(lab.ConfigDir, "session"))
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		t.Fatalf("lab session token: %v", err)
	}
	return strings.TrimSpace(string(b))
}
