//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOwnerAcrossMachines: two state dirs ("machines") on one workspace.
// The second is refused without --reclaim (adopting by name); with it, it
// takes over and the first is told it lost the lease, and its `stop` drops
// only its stale claim. While the first (having taken it back) runs a
// command, a `stop` from the second is refused without --reclaim and the
// run finishes.
func TestOwnerAcrossMachines(t *testing.T) {
	a := newWorld(t)
	b := newWorld(t)
	// One workspace, one work root: B's user config names A's.
	userCfg := filepath.Join(b.home, ".config", "crabbox", "config.yaml")
	if err := os.WriteFile(userCfg, []byte("coder:\n  workRoot: "+filepath.Join(a.home, "remote-work")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := a.warmup("--slug", "e2e-owner")
	if _, err := os.Stat(filepath.Join(a.home, "remote-work", ".crabbox-owner.json")); err != nil {
		t.Errorf("no owner record after warmup: %v", err)
	}
	a.must("run", "--id", l.id, "--", "true")

	r := b.crabbox("run", "--id", l.workspace, "--", "true")
	wantCode(t, r, 2, "B adopts A's workspace by name")
	wantStderr(t, r, "belongs to another machine", "--reclaim")
	if b.hasClaim(l.id) || len(b.claims().Claims) != 0 {
		t.Errorf("refused adoption left a claim in B: %+v", b.claims())
	}
	r = b.crabbox("ssh", l.workspace)
	wantCode(t, r, 2, "B ssh to A's workspace")

	r = b.crabbox("run", "--reclaim", "--id", l.workspace, "--", "echo", "b-was-here")
	wantCode(t, r, 0, "B run --reclaim")
	wantStderr(t, r, "took over lease")

	r = a.crabbox("run", "--id", l.id, "--", "true")
	wantCode(t, r, 2, "A after the takeover")
	wantStderr(t, r, "was taken over by another machine", "crabbox stop "+l.id)
	r = a.crabbox("ssh", l.id)
	wantCode(t, r, 2, "A ssh after the takeover")

	// The suggested command drops A's stale claim and leaves the workspace.
	r = a.crabbox("stop", l.id)
	wantCode(t, r, 0, "A stop of its stale claim")
	if a.hasClaim(l.id) {
		t.Errorf("A's stale claim is still there")
	}
	if row := a.coderRow(l.workspace); row == nil || row.Status != "running" {
		t.Errorf("A's stale-claim stop changed the workspace: %+v", row)
	}

	// A takes it back and runs; B's stop during the run is refused.
	p := a.start("", nil, "run", "--reclaim", "--id", l.workspace, "--", "sh", "-c", "sleep 25; echo a-finished")
	waitUntil(t, 3*time.Minute, "A's run to start", p, func() bool {
		return strings.Contains(p.errb.String(), "running on ")
	})
	time.Sleep(2 * time.Second)
	r = b.crabbox("stop", l.workspace)
	wantCode(t, r, 2, "B stop during A's run")
	wantStderr(t, r, "run in progress from another machine", "crabbox stop --reclaim")
	if row := b.coderRow(l.workspace); row == nil || row.Status != "running" {
		t.Errorf("refused stop changed the workspace: %+v", row)
	}
	res := p.wait(3 * time.Minute)
	wantCode(t, res, 0, "A's run while B tried to stop")
	if !strings.Contains(res.stdout, "a-finished") {
		t.Errorf("A's run did not finish:\n%s", res.stdout)
	}
	a.must("stop", l.workspace)
}
