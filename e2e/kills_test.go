//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// leaseVisible checks that list, status and cleanup --dry-run all show a
// lease left behind by a killed crabbox (list shows a claim whose workspace
// is not there (yet) as state missing).
func (w *world) leaseVisible(id, workspace string, wantStates ...string) {
	w.t.Helper()
	list := decodeJSON[[]jsonLease](w.t, w.must("list", "--json").stdout)
	found := false
	for _, l := range list {
		if l.ID == id {
			found = true
			ok := len(wantStates) == 0
			for _, s := range wantStates {
				ok = ok || l.State == s
			}
			if !ok {
				w.t.Errorf("list shows %s as %s, want one of %v", id, l.State, wantStates)
			}
		}
	}
	if !found {
		w.t.Errorf("list --json lacks lease %s: %+v", id, list)
	}
	// status of a lease whose workspace is missing is exit 5 ("not found")
	// naming the lease and the command that drops the claim.
	if r := w.crabbox("status", id, "--json"); r.code == 5 {
		if !strings.Contains(r.stderr, id) || !strings.Contains(r.stderr, "crabbox stop "+id) {
			w.t.Errorf("status of a missing lease: %s", r.stderr)
		}
	} else if st := decodeJSON[jsonLease](w.t, r.stdout); r.code != 0 || st.ID != id {
		w.t.Errorf("status %s: exit %d %+v", id, r.code, st)
	}
	dry := w.must("cleanup", "--dry-run")
	if !strings.Contains(dry.stdout+dry.stderr, "workspace="+workspace) {
		w.t.Errorf("cleanup --dry-run does not mention %s:\n%s%s", workspace, dry.stdout, dry.stderr)
	}
}

// SIGKILL warmup around `coder create`. The claim is written before the
// create, so list/status/cleanup --dry-run see the lease and `crabbox stop`
// releases it whatever the create did.
//
// Finding: `coder create` runs in its own process group, so a kill of
// crabbox does not signal its group, but on Linux crabbox's children die
// with it (parent-death signal, execx). Killed before the create starts
// (here, while the wrapper delays it), no workspace appears; killed once
// the workspace exists, the build goes on server side.
func TestKillWarmupDuringCreate(t *testing.T) {
	t.Parallel()
	t.Run("before-create", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t)
		f := newFaults(t)
		f.set("create 1 delay 2s")
		p := w.start("", nil, f.args("warmup", "--slug", "e2e-kill-precreate")...)
		waitUntil(t, time.Minute, "coder create to start", p, func() bool { return f.marker("delay.create.1") })
		r := p.kill()
		wantCode(t, r, 137, "killed warmup")
		id, ws := provisioned(t, w, r.stderr)
		if !w.hasClaim(id) {
			t.Fatalf("no claim after a kill during create")
		}
		// The wrapper either dies with crabbox or (without a parent-death
		// signal) runs the create and marks its end.
		waitUntil(t, 2*time.Minute, "the orphaned coder create to end", nil, func() bool {
			return f.marker("done.create.1") || procCmdlinesContaining(f.wrapper+"\x00create") == 0
		})
		row := w.coderRow(ws)
		t.Logf("workspace after the orphaned create ended: %+v", row)
		if row == nil {
			w.leaseVisible(id, ws, "missing")
			r = w.must("stop", id)
			wantStderr(t, r, "released lease="+id, "workspace no longer exists; claim removed")
		} else {
			w.leaseVisible(id, ws)
			w.must("stop", id)
		}
		w.assertReleased(id, ws)
	})
	t.Run("mid-create", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t)
		p := w.start("", nil, "warmup", "--slug", "e2e-kill-midcreate")
		var ws string
		waitUntil(t, 2*time.Minute, "the workspace to exist in Coder", p, func() bool {
			if m := workspaceRe.FindStringSubmatch(p.errb.String()); m != nil {
				ws = m[2]
				return w.coderRow(ws) != nil
			}
			return false
		})
		r := p.kill()
		id, _ := provisioned(t, w, r.stderr)
		if !w.hasClaim(id) {
			t.Fatalf("no claim after a kill during create")
		}
		w.leaseVisible(id, ws)
		waitUntil(t, 2*time.Minute, "the workspace build to finish", nil, func() bool {
			row := w.coderRow(ws)
			return row != nil && row.Status == "running"
		})
		w.leaseVisible(id, ws, "running", "ready")
		r = w.must("stop", id)
		wantStderr(t, r, "stopped coder workspace lease="+id)
		w.assertReleased(id, ws)
	})
}

// SIGKILL warmup during the readiness wait (every tunnel fails, so the
// wait cannot end by itself); the network heals; the lease is visible and
// cleanup releases it once its claim expired.
func TestKillWarmupDuringReady(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	f := newFaults(t)
	f.set("ssh * fail")
	p := w.start("", nil, f.args("warmup", "--slug", "e2e-kill-ready")...)
	waitUntil(t, 2*time.Minute, "the readiness wait", p, func() bool { return f.count("ssh", "fail") >= 2 })
	r := p.kill()
	id, ws := provisioned(t, w, r.stderr)
	f.clear()
	if !w.hasClaim(id) {
		t.Fatalf("no claim after a kill during the readiness wait")
	}
	w.leaseVisible(id, ws, "running", "ready", "starting")
	w.expireClaim(id)
	c := w.must("cleanup")
	if !strings.Contains(c.stdout, "coder cleanup stop workspace="+ws+" lease="+id+" reason=claim expired dry_run=false") {
		t.Errorf("cleanup stdout = %q", c.stdout)
	}
	w.assertReleased(id, ws)
	if n := procCmdlinesContaining(f.wrapper); n != 0 {
		t.Errorf("%d processes of the fault wrapper left", n)
	}
}

// SIGKILL `run --id` during the sync and during the command on one warm
// lease: the runs are recorded interrupted, the lease stays visible, its
// lock is not stale, the next run resyncs, and `crabbox stop` releases it.
// Documented finding: the killed run's remote command keeps running until
// the workspace stops.
func TestKillRun(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := w.warmup("--slug", "e2e-kill-run")

	// During the sync (slow rsync of 3 MiB).
	big := w.writeRandom("big.bin", 3<<20)
	slow, started := slowRsync(t, 300)
	p := w.start("", slow, "run", "--id", l.id, "--", "true")
	waitUntil(t, time.Minute, "rsync to start", p, func() bool {
		_, err := os.Stat(started)
		return err == nil
	})
	time.Sleep(500 * time.Millisecond)
	r := p.kill()
	syncRun := runID(t, r)
	// rsync has its own process group but dies with crabbox (Pdeathsig);
	// TestSyncFidelityKillRevertRerun asserts it.
	t.Logf("rsync processes right after SIGKILL of crabbox: %d", procCmdlinesContaining("--bwlimit=300"))

	// The lease lock died with the process; the next run resyncs fully
	// (the killed sync never completed) and sees the right tree.
	r = w.must("run", "--id", l.id, "--", "sh", "-c", "wc -c < big.bin")
	if strings.Contains(r.stderr, "waiting for lease") || strings.Contains(r.stderr, "No changes detected") {
		t.Errorf("stale lock or skipped sync after the kill:\n%s", r.stderr)
	}
	if strings.TrimSpace(r.stdout) != itoa(len(big)) {
		t.Errorf("remote big.bin size = %q", r.stdout)
	}

	// During the command.
	marker := "cbx-e2e-killcmd-" + l.id
	p = w.start("", nil, "run", "--id", l.id, "--", "sh", "-c", "echo started; sleep 300 # "+marker)
	waitUntil(t, time.Minute, "the command to start", p, func() bool {
		return strings.Contains(p.out.String(), "started") && procCmdlinesContaining(marker) > 0
	})
	r = p.kill()
	cmdRun := runID(t, r)

	// History: both interrupted, never running forever.
	states := map[string]string{}
	for _, h := range w.history("--lease", l.id) {
		states[h.ID] = h.State
	}
	if states[syncRun] != "interrupted" || states[cmdRun] != "interrupted" {
		t.Errorf("history states = %v, want %s and %s interrupted", states, syncRun, cmdRun)
	}
	w.leaseVisible(l.id, l.workspace, "running", "ready")
	remoteAfterKill := procCmdlinesContaining(marker)
	t.Logf("remote command processes after SIGKILL of crabbox: %d", remoteAfterKill)

	// The next run on the lease stops what the killed run left running
	// before it touches the tree.
	if remoteAfterKill == 0 {
		t.Fatalf("expected the killed run's command to outlive crabbox")
	}
	next := w.must("run", "--id", l.id, "--", "true")
	if n := procCmdlinesContaining(marker); n != 0 {
		t.Errorf("%d processes of the killed run's command still alive after the next run", n)
	}
	if !strings.Contains(next.stderr, "sync warning: stopped the command left running by run "+cmdRun) {
		t.Errorf("the next run does not say it stopped %s's command:\n%s", cmdRun, next.stderr)
	}

	r = w.must("stop", l.id)
	w.assertReleased(l.id, l.workspace)
	// crabbox's own leftovers: its ssh control master (ControlPersist 60 s)
	// and proxy; none may outlive the workspace for long.
	t.Logf("local ssh processes for %s after stop: %d", l.workspace, procCmdlinesContaining(l.workspace))
	if _, err := os.Stat(filepath.Join(w.remoteDir(l.id), ".crabbox")); err != nil {
		t.Logf("remote .crabbox dir: %v", err)
	}
}
