//go:build e2e

package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// procsWhere are the PIDs of this machine's processes whose argv (and
// whole NUL-joined command line) match.
func procsWhere(match func(argv [][]byte, cmdline []byte) bool) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if argv := bytes.Split(bytes.TrimSuffix(b, []byte{0}), []byte{0}); len(argv) > 2 && match(argv, b) {
			out = append(out, pid)
		}
	}
	return out
}

// masterPIDs are the persistent ssh control masters (ssh -f -N ...
// ControlPersist=N) whose command line names workspace.
func masterPIDs(workspace string) []int {
	return procsWhere(func(argv [][]byte, b []byte) bool {
		return string(argv[0]) == "ssh" && string(argv[1]) == "-f" &&
			bytes.Contains(b, []byte("ControlPersist=")) && bytes.Contains(b, []byte(workspace))
	})
}

// stdioProxies are the live `coder ssh --stdio` processes for workspace
// (the tunnels' ProxyCommands; a master's own command line only names one).
func stdioProxies(workspace string) []int {
	return procsWhere(func(argv [][]byte, b []byte) bool {
		return filepath.Base(string(argv[0])) == "coder" && string(argv[1]) == "ssh" &&
			bytes.Contains(b, []byte("--stdio")) && bytes.Contains(b, []byte(workspace))
	})
}

// setPersist appends ssh.persist to the world's user config.
func (w *world) setPersist(v string) {
	w.t.Helper()
	p := filepath.Join(w.home, ".config", "crabbox", "config.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(p, append(b, []byte("ssh:\n  persist: "+v+"\n")...), 0o600); err != nil {
		w.t.Fatal(err)
	}
}

// Issue 13 item 1: one persistent control master serves consecutive
// `run --id` processes (one `coder ssh --stdio` for all of them, no
// `coder list`), survives crabbox exiting, and `stop` ends it.
func TestPersistentTunnelReusedAcrossRuns(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	f := newFaults(t) // no rules: a counting coder wrapper
	l := w.warmup("--coder-cli", f.wrapper, "--slug", "e2e-persist")
	proxies, lists := f.count("ssh", ""), f.count("list", "")
	if proxies != 1 {
		t.Fatalf("warmup opened %d coder ssh proxies, want 1: %v", proxies, f.calls())
	}
	masters := masterPIDs(l.workspace)
	if len(masters) != 1 {
		t.Fatalf("masters after warmup (crabbox exited) = %v, want 1", masters)
	}
	proxy := stdioProxies(l.workspace)
	if len(proxy) != 1 {
		t.Fatalf("coder ssh --stdio processes after warmup = %v, want 1", proxy)
	}
	for i := 0; i < 3; i++ {
		r := w.must("run", "--coder-cli", f.wrapper, "--id", l.id, "--", "echo", "warm-"+strconv.Itoa(i))
		if !strings.Contains(r.stdout, "warm-"+strconv.Itoa(i)) {
			t.Fatalf("run %d stdout %q", i, r.stdout)
		}
	}
	if n := f.count("ssh", "") - proxies; n != 0 {
		t.Errorf("3 warm runs opened %d more coder ssh proxies, want 0 (one for all): %v", n, f.calls())
	}
	if n := f.count("list", "") - lists; n != 0 {
		t.Errorf("3 warm runs ran coder list %d times, want 0: %v", n, f.calls())
	}
	if got := masterPIDs(l.workspace); len(got) != 1 || got[0] != masters[0] {
		t.Errorf("masters after the runs = %v, want the warmup's %v", got, masters)
	}
	// The one tunnel process, counted live: the warmup's proxy still runs.
	if got := stdioProxies(l.workspace); len(got) != 1 || got[0] != proxy[0] {
		t.Errorf("coder ssh --stdio processes after the runs = %v, want the warmup's %v", got, proxy)
	}
	w.must("stop", "--coder-cli", f.wrapper, l.id)
	w.assertReleased(l.id, l.workspace)
	if got := masterPIDs(l.workspace); len(got) != 0 {
		t.Errorf("masters after stop = %v, want none", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(stdioProxies(l.workspace)) != 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := stdioProxies(l.workspace); len(got) != 0 {
		t.Errorf("coder ssh --stdio processes after stop = %v, want none", got)
	}
}

// An idle persistent master ends by itself within ssh.persist + 5 s.
func TestPersistentTunnelIdleExpiry(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.setPersist("5s")
	l := w.warmup("--slug", "e2e-persist-idle")
	w.must("run", "--id", l.id, "--", "true")
	end := time.Now()
	if got := masterPIDs(l.workspace); len(got) != 1 {
		t.Fatalf("masters right after the run = %v, want 1", got)
	}
	for len(masterPIDs(l.workspace)) != 0 {
		if time.Since(end) > 10*time.Second {
			t.Fatalf("master still up %s after its last session (ssh.persist 5s)", time.Since(end).Round(time.Second))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("idle master ended %s after the run", time.Since(end).Round(100*time.Millisecond))
	// The next run finds the dead socket and takes the ordinary path.
	w.must("run", "--id", l.id, "--", "true")
	w.must("stop", l.id)
}

// ssh.persist 0 restores one tunnel per process: nothing outlives crabbox.
func TestPersistentTunnelOff(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.setPersist("0s")
	l := w.warmup("--slug", "e2e-persist-off")
	w.must("run", "--id", l.id, "--", "true")
	// `ssh -O exit` returns when the master has its request; it exits
	// right after.
	deadline := time.Now().Add(5 * time.Second)
	for len(masterPIDs(l.workspace)) != 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := masterPIDs(l.workspace); len(got) != 0 {
		t.Errorf("masters with ssh.persist 0 = %v, want none", got)
	}
	w.must("stop", l.id)
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// Issue 13 acceptance: after `coder stop` behind crabbox's back, the next
// run finds the master dead (or ends it when it no longer answers),
// starts the workspace exactly once and succeeds over a new master, which
// the run after it reuses without running coder.
func TestPersistentTunnelAfterStopBehindBack(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	f := newFaults(t)
	l := w.warmup("--coder-cli", f.wrapper, "--slug", "e2e-persist-stopped")
	old := masterPIDs(l.workspace)
	if len(old) != 1 {
		t.Fatalf("masters after warmup = %v, want 1", old)
	}
	before := w.latestBuild(l.workspace)
	w.coderBehindBack("stop", "--yes", "admin/"+l.workspace)
	starts := f.count("start", "")
	r := w.must("run", "--coder-cli", f.wrapper, "--id", l.id, "--", "echo", "back-again")
	if !strings.Contains(r.stdout, "back-again") {
		t.Errorf("run stdout %q", r.stdout)
	}
	if n := f.count("start", "") - starts; n != 1 {
		t.Errorf("crabbox issued %d coder start calls, want 1: %v", n, f.calls())
	}
	if after := w.latestBuild(l.workspace); after.Number != before.Number+2 || after.Transition != "start" || after.Status != "running" {
		t.Errorf("builds %+v -> %+v, want one stop and one start", before, after)
	}
	if alive(old[0]) {
		t.Errorf("the old master %d is still up after the workspace stopped and a run", old[0])
	}
	now := masterPIDs(l.workspace)
	if len(now) != 1 || now[0] == old[0] {
		t.Fatalf("masters after the run = %v, want one new one (old %v)", now, old)
	}
	// The next run uses the new master: no coder program at all.
	calls := len(f.calls())
	w.must("run", "--coder-cli", f.wrapper, "--id", l.id, "--", "true")
	if n := len(f.calls()) - calls; n != 0 {
		t.Errorf("the run after ran %d coder programs, want 0: %v", n, f.calls()[calls:])
	}
	if got := masterPIDs(l.workspace); len(got) != 1 || got[0] != now[0] {
		t.Errorf("masters after the next run = %v, want %v", got, now)
	}
	w.must("stop", "--coder-cli", f.wrapper, l.id)
	if got := masterPIDs(l.workspace); len(got) != 0 {
		t.Errorf("masters after stop = %v, want none", got)
	}
}

// Issue 13 acceptance: a workspace deleted and recreated under the same
// name behind crabbox's back is another workspace. The lease's master
// (keyed by the old workspace ID) is never used for the new one: runs
// against the old lease fail without running the command there, and
// leave no master behind. The second run has `coder list` delayed, so the
// tunnel opened by name during the listing (which reaches the new
// workspace) is up before the listing says the old ID is gone: it must not
// survive either, or the run after it would take it for the old
// workspace's live master. Positive control: the marker command does land
// when sent to the new workspace directly.
func TestPersistentTunnelAfterRecreate(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	f := newFaults(t)
	l := w.warmup("--coder-cli", f.wrapper, "--slug", "e2e-persist-recreate")
	old := masterPIDs(l.workspace)
	if len(old) != 1 {
		t.Fatalf("masters after warmup = %v, want 1", old)
	}
	oldRow := w.coderRow(l.workspace)
	ref := "admin/" + l.workspace
	w.coderBehindBack("delete", "--yes", ref)
	w.coderBehindBack("create", "--yes", "--template", lab.Template, l.workspace)
	newRow := w.coderRow(l.workspace)
	if oldRow == nil || newRow == nil || newRow.ID == oldRow.ID {
		t.Fatalf("recreate: old %+v new %+v, want another workspace ID", oldRow, newRow)
	}
	marker := filepath.Join(lab.State, "workspaces", l.workspace, "crabbox-recreate-marker")
	script := `echo ran > "$HOME/crabbox-recreate-marker"`
	for i, rules := range [][]string{nil, {"list * delay 4s"}, nil} {
		f.set(rules...)
		r := w.crabbox("run", "--coder-cli", f.wrapper, "--id", l.id, "--", "sh", "-c", script)
		if r.code == 0 {
			t.Errorf("run %d against the replaced workspace: exit 0, want a failure\n%s%s", i+1, r.stdout, r.stderr)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("run %d (rules %v) ran the command on the new workspace %s", i+1, rules, newRow.ID)
		}
		// The old master is ended (a SIGTERM when it no longer answers
		// `ssh -O exit`), which takes a moment on a loaded machine.
		deadline := time.Now().Add(5 * time.Second)
		for alive(old[0]) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if alive(old[0]) {
			t.Errorf("run %d: the old master %d is still up 5 s after the run", i+1, old[0])
		}
		deadline = time.Now().Add(5 * time.Second)
		for len(masterPIDs(l.workspace)) != 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if got := masterPIDs(l.workspace); len(got) != 0 {
			t.Errorf("run %d (rules %v) left masters %v for a workspace the lease no longer has", i+1, rules, got)
		}
	}
	f.clear()
	// Positive control: the same command over a fresh connection to the new
	// workspace writes the marker.
	out, err := runCmd(cmdTimeout, w.repo, w.env, "ssh", "-o", "ProxyCommand="+lab.Coder+" ssh --stdio "+ref,
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "x", script)
	if err != nil {
		t.Fatalf("ssh to the new workspace: %v\n%s", err, out)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("positive control: the marker is missing after a direct ssh: %v", err)
	}
	w.crabbox("stop", l.id) // the claim; the new workspace is the warmup cleanup's
}
