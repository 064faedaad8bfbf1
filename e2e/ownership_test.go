//go:build e2e

package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	reusingRe = regexp.MustCompile(`(?m)^reusing released coder workspace admin/(\S+) \(lease=(cbx_[0-9a-f]{12});`)
	cleanedRe = regexp.MustCompile(`(?m)^lease cleanup stopped=true policy=\S+ lease=(cbx_[0-9a-f]{12}) `)
	workdirRe = regexp.MustCompile(`(?m)^run \S+ lease=\S+ .* workdir=(\S+)`)
	leaseMsRe = regexp.MustCompile(`"leaseMs":(\d+)`)
)

// crabboxIn runs crabbox in dir (another checkout of the same user).
func (w *world) crabboxIn(dir string, args ...string) result {
	w.t.Helper()
	return w.start(dir, nil, args...).wait(cmdTimeout)
}

// oneShot runs a one-shot `crabbox run` and returns the lease it used, the
// workspace, whether the workspace was reused, and the lease time.
func (w *world) oneShot(extra ...string) (leaseID, workspace string, reused bool, leaseMs string, workdir string) {
	w.t.Helper()
	args := append(append([]string{"run", "--timing-json"}, extra...), "--", "sh", "-c", "echo one-shot-ok")
	r := w.crabbox(args...)
	if pm := workspaceRe.FindStringSubmatch(r.stderr); pm != nil {
		w.t.Cleanup(func() { w.deleteWorkspace(pm[2]) })
		workspace = pm[2]
	}
	if m := reusingRe.FindStringSubmatch(r.stderr); m != nil {
		w.t.Cleanup(func() { w.deleteWorkspace(m[1]) })
		if workspace != "" {
			w.t.Errorf("run both provisioned %s and reused %s", workspace, m[1])
		}
		workspace, reused = m[1], true
	}
	if r.code != 0 || !strings.Contains(r.stdout, "one-shot-ok") {
		w.t.Fatalf("one-shot run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	m := cleanedRe.FindStringSubmatch(r.stderr)
	if m == nil {
		w.t.Fatalf("one-shot run did not release its lease:\n%s", r.stderr)
	}
	if lm := leaseMsRe.FindStringSubmatch(r.stderr); lm != nil {
		leaseMs = lm[1]
	}
	if wm := workdirRe.FindStringSubmatch(r.stderr); wm != nil {
		workdir = wm[1]
	}
	return m[1], workspace, reused, leaseMs, workdir
}

type listRow struct {
	ID        string `json:"id"`
	Workspace string `json:"workspace"`
	State     string `json:"state"`
}

func (w *world) listJSON() []listRow {
	w.t.Helper()
	return decodeJSON[[]listRow](w.t, w.must("list", "--json").stdout)
}

// Three one-shot runs in a row leave one stopped workspace: the 2nd and 3rd
// start the one the 1st created (each in a fresh workdir); list shows it as
// released under the real lease ID; cleanup --released-older-than 0s
// (dry-run first) deletes it and nothing else.
func TestReleasedWorkspaceReuse(t *testing.T) {
	w := newWorld(t)
	control := w.warmup("--slug", "e2e-control") // a claimed lease cleanup must leave alone

	id1, ws, reused1, ms1, wd1 := w.oneShot()
	if reused1 || ws == "" {
		t.Fatalf("first run: reused=%v workspace=%q, want a created workspace", reused1, ws)
	}
	id2, ws2, reused2, ms2, wd2 := w.oneShot()
	id3, ws3, reused3, ms3, wd3 := w.oneShot()
	t.Logf("leaseMs: create %s, start %s, %s", ms1, ms2, ms3)
	if !reused2 || !reused3 || ws2 != ws || ws3 != ws {
		t.Fatalf("runs 2 and 3 used %s (reused=%v), %s (reused=%v); want both to start %s", ws2, reused2, ws3, reused3, ws)
	}
	if id1 == id2 || id2 == id3 || wd1 == wd2 || wd2 == wd3 {
		t.Errorf("leases %s %s %s, workdirs %s %s %s: want a new lease and workdir each run", id1, id2, id3, wd1, wd2, wd3)
	}
	if row := w.coderRow(ws); row == nil || row.Status != "stopped" {
		t.Fatalf("workspace %s = %+v, want stopped", ws, row)
	}

	var got *listRow
	for _, r := range w.listJSON() {
		if r.Workspace == ws {
			rr := r
			got = &rr
		}
	}
	if got == nil || got.ID != id3 || got.State != "released" {
		t.Fatalf("list row of %s = %+v, want lease %s state released", ws, got, id3)
	}
	if r := w.crabbox("stop", ws); r.code != 0 || strings.Contains(r.stderr, "did not create or adopt") {
		t.Errorf("stop of a released workspace: exit %d\n%s", r.code, r.stderr)
	}

	dry := w.must("cleanup", "--released-older-than", "0s", "--dry-run")
	lines := actionLines(dry.stdout)
	if len(lines) != 1 || !strings.Contains(lines[0], "coder cleanup delete workspace="+ws+" lease="+id3) || !strings.Contains(lines[0], "dry_run=true") {
		t.Fatalf("dry-run actions = %q, want exactly the delete of %s", lines, ws)
	}
	if w.coderRow(ws) == nil {
		t.Fatal("dry-run deleted the workspace")
	}
	real := w.must("cleanup", "--released-older-than", "0s")
	if lines := actionLines(real.stdout); len(lines) != 1 || !strings.Contains(lines[0], "delete workspace="+ws) {
		t.Fatalf("cleanup actions = %q, want exactly the delete of %s", lines, ws)
	}
	if err := waitGone(w, ws, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if row := w.coderRow(control.workspace); row == nil || row.Status == "stopped" {
		t.Errorf("control lease %s = %+v after cleanup, want untouched", control.workspace, row)
	}
	if !w.hasClaim(control.id) {
		t.Error("control claim removed by cleanup")
	}

	// --fresh-workspace creates even with a released workspace at hand.
	_, wsA, _, _, _ := w.oneShot()
	_, wsB, reusedB, _, _ := w.oneShot("--fresh-workspace")
	if reusedB || wsB == wsA {
		t.Errorf("--fresh-workspace reused %s", wsB)
	}
}

func actionLines(stdout string) []string {
	var out []string
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, "coder cleanup ") {
			out = append(out, l)
		}
	}
	return out
}

func waitGone(w *world, ws string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if w.coderRow(ws) == nil {
			return nil
		}
		time.Sleep(2 * time.Second)
	}
	return errors.New("workspace " + ws + " still listed after cleanup")
}

// editClaim rewrites fields of a claim file the way an attacker (or a bad
// copy) would.
func (w *world) editClaim(leaseID string, edit func(c map[string]any)) {
	w.t.Helper()
	data, err := os.ReadFile(w.claimPath(leaseID))
	if err != nil {
		w.t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(data, &c); err != nil {
		w.t.Fatal(err)
	}
	edit(c)
	data, _ = json.MarshalIndent(c, "", "  ")
	if err := os.WriteFile(w.claimPath(leaseID), append(data, '\n'), 0o600); err != nil {
		w.t.Fatal(err)
	}
}

// A tampered claim (another workspace's ID, or another workspace's name) is
// refused naming the field, and nothing is stopped.
func TestTamperedClaimRefused(t *testing.T) {
	w := newWorld(t)
	a := w.warmup("--slug", "e2e-tamper-a")
	b := w.warmup("--slug", "e2e-tamper-b")
	rowB := w.coderRow(b.workspace)
	rowA := w.coderRow(a.workspace)
	if rowA == nil || rowB == nil {
		t.Fatal("warmed workspaces not listed")
	}
	orig, err := os.ReadFile(w.claimPath(a.id))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		edit  func(c map[string]any)
		field string
	}{
		{"swapped workspace ID", func(c map[string]any) { c["workspaceID"] = rowB.ID }, "workspace name"},
		{"another workspace's name", func(c map[string]any) {
			c["cloudID"] = "admin/" + b.workspace
			c["labels"].(map[string]any)["coder_workspace_ref"] = "admin/" + b.workspace
			c["labels"].(map[string]any)["coder_workspace"] = b.workspace
		}, "workspace name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(w.claimPath(a.id), orig, 0o600); err != nil {
				t.Fatal(err)
			}
			w.editClaim(a.id, tc.edit)
			for _, args := range [][]string{{"stop", a.id}, {"run", "--id", a.id, "--", "true"}} {
				r := w.crabbox(args...)
				wantCode(t, r, 2, strings.Join(args, " "))
				wantStderr(t, r, "refusing", tc.field, "nothing was changed")
			}
			for _, ws := range []string{a.workspace, b.workspace} {
				if row := w.coderRow(ws); row == nil || row.Status == "stopped" || row.Status == "stopping" {
					t.Errorf("workspace %s = %+v after a refused stop, want running", ws, row)
				}
			}
		})
	}
	if err := os.WriteFile(w.claimPath(a.id), orig, 0o600); err != nil {
		t.Fatal(err)
	}
	w.must("stop", a.id)
	w.must("stop", b.id)
}

// deleteOnRelease in the user's own config does not turn `stop` of a claim
// recorded release=stop into a delete; --coder-delete-on-release on the
// command line does. A lease claimed by another repository needs --reclaim.
func TestStopHonoursClaim(t *testing.T) {
	w := newWorld(t)
	l1 := w.warmup("--slug", "e2e-honour-1")
	l2 := w.warmup("--slug", "e2e-honour-2")
	l3 := w.warmup("--slug", "e2e-honour-3")
	userCfg := filepath.Join(w.home, ".config", "crabbox", "config.yaml")
	if err := os.WriteFile(userCfg, []byte("coder:\n  workRoot: "+filepath.Join(w.home, "remote-work")+"\n  deleteOnRelease: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.must("stop", l1.id)
	if row := w.coderRow(l1.workspace); row == nil || row.Status != "stopped" {
		t.Errorf("stop with deleteOnRelease in the user config: workspace = %+v, want stopped (claim says stop)", row)
	}
	w.must("stop", "--coder-delete-on-release", l2.id)
	if err := waitGone(w, l2.workspace, 2*time.Minute); err != nil {
		t.Errorf("--coder-delete-on-release on the command line: %v", err)
	}

	// Another checkout of the same user.
	other := filepath.Join(t.TempDir(), "other-repo")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := runCmd(cmdTimeout, other, w.env, "git", "init", "-q", "-b", "main"); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(other, "crabbox.yaml"), []byte("provider: coder\ncoder:\n  template: "+lab.Template+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := w.crabboxIn(other, "stop", l3.id)
	wantCode(t, r, 2, "stop from another repo")
	wantStderr(t, r, "claimed by repo", "--reclaim", "nothing was changed")
	if row := w.coderRow(l3.workspace); row == nil || row.Status == "stopped" || row.Status == "stopping" {
		t.Errorf("refused stop changed %s: %+v", l3.workspace, row)
	}
	if r := w.crabboxIn(other, "stop", "--reclaim", l3.id); r.code != 0 {
		t.Errorf("stop --reclaim: exit %d\n%s", r.code, r.stderr)
	}
	if row := w.coderRow(l3.workspace); row == nil || row.Status != "stopped" {
		t.Errorf("stop --reclaim: workspace = %+v, want stopped", row)
	}
}

// Create vs start, measured as crabbox's lease time (--timing-json
// leaseMs): five one-shot runs with --fresh-workspace (create), then five
// that start a released workspace.
func TestReleasedReuseTiming(t *testing.T) {
	if os.Getenv("CRABBOX_E2E_TIMING") == "" {
		t.Skip("set CRABBOX_E2E_TIMING=1 to measure create vs start")
	}
	w := newWorld(t)
	var creates, starts []string
	for i := 0; i < 5; i++ {
		_, _, reused, ms, _ := w.oneShot("--fresh-workspace")
		if reused {
			t.Fatal("--fresh-workspace reused")
		}
		creates = append(creates, ms)
	}
	for i := 0; i < 5; i++ {
		_, _, reused, ms, _ := w.oneShot()
		if !reused {
			t.Fatal("run did not reuse a released workspace")
		}
		starts = append(starts, ms)
	}
	t.Logf("TIMING leaseMs create=%v start=%v", creates, starts)
	w.must("cleanup", "--released-older-than", "0s")
}
