//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The whole lease lifecycle on a real Coder: warmup, status --wait,
// inspect, list, resolution by every kind of identifier, ssh line pasted
// into a shell, stop, ssh restarting it, delete on release.
func TestLeaseLifecycle(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := w.warmup("--slug", "e2e-life", "--timing-json")
	if l.slug != "e2e-life" {
		t.Errorf("slug = %q, want e2e-life", l.slug)
	}
	if l.ref != "admin/"+l.workspace {
		t.Errorf("server = %q, want admin/%s", l.ref, l.workspace)
	}
	if !strings.HasPrefix(l.workspace, "crabbox-e2e-life-") {
		t.Errorf("workspace = %q", l.workspace)
	}

	// status --wait: ready.
	st := decodeJSON[jsonLease](t, w.must("status", "--id", l.slug, "--wait", "--wait-timeout", "120s", "--json").stdout)
	if !st.Ready || st.State != "ready" || st.ID != l.id {
		t.Errorf("status --wait --json = %+v", st)
	}

	// inspect --json has every field of the lease view.
	raw := w.must("inspect", "--id", l.slug, "--json").stdout
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "slug", "provider", "state", "ready", "host", "serverType", "keep", "lastTouchedAt", "expiresAt", "labels"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("inspect --json lacks %q", k)
		}
	}
	in := decodeJSON[jsonLease](t, raw)
	for _, k := range []string{"coder_workspace", "coder_workspace_ref", "lease", "slug", "state"} {
		if in.Labels[k] == "" {
			t.Errorf("inspect labels lack %q: %v", k, in.Labels)
		}
	}
	if in.Labels["coder_workspace_ref"] != l.ref || !in.Keep || in.ServerType != "local" {
		t.Errorf("inspect = %+v", in)
	}

	// list --json contains the lease.
	list := decodeJSON[[]jsonLease](t, w.must("list", "--json").stdout)
	found := false
	for _, x := range list {
		found = found || x.ID == l.id
	}
	if !found {
		t.Errorf("list --json lacks %s: %+v", l.id, list)
	}

	// The same lease by slug, lease ID, workspace name and owner/name, after
	// other commands used it.
	for _, ident := range []string{l.slug, l.id, l.workspace, l.ref} {
		got := decodeJSON[jsonLease](t, w.must("status", ident, "--json").stdout)
		if got.ID != l.id || got.Slug != l.slug {
			t.Errorf("status %s -> id=%s slug=%s, want %s %s", ident, got.ID, got.Slug, l.id, l.slug)
		}
	}

	// The printed ssh line works when pasted into a shell.
	line := strings.TrimSpace(w.must("ssh", l.slug).stdout)
	if !strings.HasPrefix(line, "'ssh' ") || !strings.Contains(line, "ForwardAgent=no") {
		t.Fatalf("ssh line = %q", line)
	}
	if out, err := runCmd(cmdTimeout, w.repo, w.env, "bash", "-c", line+" 'echo pasted-ok'"); err != nil || !strings.Contains(string(out), "pasted-ok") {
		t.Fatalf("pasted ssh line: %v\n%s", err, out)
	}
	// Host keys went to crabbox's own known_hosts, never ~/.ssh.
	if _, err := os.Stat(filepath.Join(w.home, ".ssh", "known_hosts")); err == nil {
		t.Errorf("~/.ssh/known_hosts was written")
	}
	kh, _ := filepath.Glob(filepath.Join(w.home, ".config", "crabbox", "coder", "known_hosts.d", "*"))
	if len(kh) == 0 {
		t.Errorf("no per-workspace known_hosts file")
	}

	// stop: Coder agrees it is stopped; the claim is gone.
	r := w.must("stop", l.slug)
	if !strings.Contains(r.stderr, "stopped coder workspace lease="+l.id) {
		t.Errorf("stop stderr = %q", r.stderr)
	}
	if row := w.coderRow(l.workspace); row == nil || row.Status != "stopped" {
		t.Fatalf("coder list after stop: %+v", row)
	}
	st = decodeJSON[jsonLease](t, w.must("status", l.workspace, "--json").stdout)
	if st.State != "stopped" || st.Ready {
		t.Errorf("status after stop = %+v", st)
	}
	// status never starts a stopped workspace, and --wait on it fails fast.
	if r := w.crabbox("status", l.workspace, "--wait"); r.code != 5 {
		t.Errorf("status --wait on stopped: exit %d, want 5", r.code)
	}
	if row := w.coderRow(l.workspace); row == nil || row.Status != "stopped" {
		t.Fatalf("status started the workspace: %+v", row)
	}

	// ssh (prepare) restarts it and claims it again.
	w.must("ssh", l.workspace)
	if row := w.coderRow(l.workspace); row == nil || row.Status != "running" {
		t.Fatalf("coder list after ssh: %+v", row)
	}

	// stop --coder-delete-on-release deletes it.
	r = w.must("stop", "--coder-delete-on-release", l.workspace)
	if !strings.Contains(r.stderr, "deleted coder workspace") {
		t.Errorf("stop stderr = %q", r.stderr)
	}
	if row := w.coderRow(l.workspace); row != nil {
		t.Fatalf("workspace still listed after delete: %+v", row)
	}
	if out := w.must("claims", "list", "--json").stdout; strings.Contains(out, l.workspace) || strings.Contains(out, l.id) {
		t.Errorf("claim left behind: %s", out)
	}
}

// Two warmups with the same --slug get different workspaces; cleanup
// --dry-run lists exactly the expired claimed one and mutates nothing;
// cleanup then stops it; an unclaimed workspace is never stopped (crabbox
// stops or deletes only a workspace it holds an exact claim for).
func TestSameSlugCleanupAndNoMutationWithoutClaim(t *testing.T) {
	t.Parallel()
	w := newWorld(t)

	// An unclaimed workspace created behind crabbox's back, in parallel.
	foreign := "e2e-foreign-" + time.Now().Format("150405")
	created := make(chan error, 1)
	go func() {
		out, err := runCmd(cmdTimeout, w.repo, w.env, lab.Coder, "create", "--yes", "--template", lab.Template, foreign)
		if err != nil {
			err = &cmdErr{err, string(out)}
		}
		created <- err
	}()
	t.Cleanup(func() { w.deleteWorkspace(foreign) })

	a := w.warmup("--slug", "e2e-twin")
	b := w.warmup("--slug", "e2e-twin")
	if a.workspace == b.workspace || a.id == b.id {
		t.Fatalf("same slug, same workspace: %+v %+v", a, b)
	}
	if err := <-created; err != nil {
		t.Fatalf("coder create %s: %v", foreign, err)
	}

	// Stop of an unclaimed workspace is refused and changes nothing.
	r := w.crabbox("stop", foreign)
	if r.code != 2 || !strings.Contains(r.stderr, "no crabbox claim") {
		t.Errorf("stop unclaimed: exit %d %q", r.code, r.stderr)
	}
	if row := w.coderRow(foreign); row == nil || row.Status != "running" {
		t.Fatalf("unclaimed workspace was touched: %+v", row)
	}

	// Expire a's claim: lastUsedAt two days ago, a one-shot (keep=false).
	claimPath := filepath.Join(w.home, ".local", "state", "crabbox", "claims", a.id+".json")
	data, err := os.ReadFile(claimPath)
	if err != nil {
		t.Fatal(err)
	}
	var claim map[string]any
	if err := json.Unmarshal(data, &claim); err != nil {
		t.Fatal(err)
	}
	claim["lastUsedAt"] = time.Now().Add(-48 * time.Hour).UTC().Format(time.RFC3339)
	claim["labels"].(map[string]any)["keep"] = "false"
	data, _ = json.MarshalIndent(claim, "", "  ")
	if err := os.WriteFile(claimPath, append(data, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}

	dry := w.must("cleanup", "--dry-run")
	want := "coder cleanup stop workspace=" + a.workspace + " lease=" + a.id + " reason=claim expired dry_run=true"
	if strings.TrimSpace(dry.stdout) != want {
		t.Errorf("cleanup --dry-run stdout = %q, want exactly %q", dry.stdout, want)
	}
	if !strings.Contains(dry.stderr, "skip coder workspace="+b.workspace+" reason=keep=true") {
		t.Errorf("cleanup --dry-run stderr lacks the kept skip: %q", dry.stderr)
	}
	if strings.Contains(dry.stdout+dry.stderr, foreign) {
		t.Errorf("cleanup mentions the unclaimed workspace: %q", dry.stdout+dry.stderr)
	}
	for _, name := range []string{a.workspace, b.workspace, foreign} {
		if row := w.coderRow(name); row == nil || row.Status != "running" {
			t.Fatalf("dry-run mutated %s: %+v", name, row)
		}
	}

	real := w.must("cleanup")
	if !strings.Contains(real.stdout, "coder cleanup stop workspace="+a.workspace) || !strings.Contains(real.stdout, "dry_run=false") {
		t.Errorf("cleanup stdout = %q", real.stdout)
	}
	if row := w.coderRow(a.workspace); row == nil || row.Status != "stopped" {
		t.Errorf("cleanup did not stop %s: %+v", a.workspace, row)
	}
	for _, name := range []string{b.workspace, foreign} {
		if row := w.coderRow(name); row == nil || row.Status != "running" {
			t.Errorf("cleanup touched %s: %+v", name, row)
		}
	}
}

type cmdErr struct {
	err error
	out string
}

func (e *cmdErr) Error() string { return e.err.Error() + "\n" + e.out }

// doctor passes on the lab and explains a missing login without mutation.
func TestDoctor(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	r := w.must("doctor")
	if !strings.Contains(r.stdout, "provider=coder cli=ready auth=ready inventory=ready api=list mutation=false") {
		t.Errorf("doctor summary: %q", r.stdout)
	}

	loggedOut := []string{"CODER_CONFIG_DIR=" + t.TempDir(), "CODER_URL="}
	r = w.crabboxEnv(loggedOut, "doctor")
	if r.code != 1 {
		t.Errorf("logged-out doctor exit %d, want 1", r.code)
	}
	if !strings.Contains(r.stdout, "auth=missing_login") || !strings.Contains(r.stdout, "mutation=false") {
		t.Errorf("logged-out doctor stdout: %q", r.stdout)
	}
	j := w.crabboxEnv(loggedOut, "doctor", "--json")
	out := decodeJSON[struct {
		OK      bool   `json:"ok"`
		Summary string `json:"summary"`
		Checks  []struct {
			Check, Status string
			Details       map[string]string
		} `json:"checks"`
	}](t, j.stdout)
	if out.OK || !strings.Contains(out.Summary, "auth=missing_login") {
		t.Errorf("doctor --json = %+v", out)
	}
}
