//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// concRuns is how many `crabbox run --id <same lease>` run at once.
const concRuns = 8

// 8 parallel runs on one lease, each from its own checkout of the repo
// (same repo name, so the same remote workdir) with its own token.txt and
// only-<i>.txt. The lease lock must serialize sync+command: each command
// checks, at its start and again after a pause, that the remote tree is
// exactly the one its own process synced (exit 99/98 otherwise), then
// exits 10+i. No claim is corrupted, no history record is lost, every
// process gets its own exit code, stdout and log.
func TestConcurrentRunsOneLease(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := w.warmup("--slug", "e2e-conc")
	yaml, err := os.ReadFile(filepath.Join(w.repo, "crabbox.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	tokens := make([]string, concRuns)
	dirs := make([]string, concRuns)
	for i := range concRuns {
		tokens[i] = fmt.Sprintf("tok-%d-%d", i, time.Now().UnixNano())
		dirs[i] = filepath.Join(base, fmt.Sprintf("c%d", i), "demo-repo")
		if out, err := runCmd(cmdTimeout, base, w.env, "git", "clone", "-q", w.repo, dirs[i]); err != nil {
			t.Fatalf("git clone: %v\n%s", err, out)
		}
		for name, content := range map[string]string{
			"crabbox.yaml":                     string(yaml),
			"token.txt":                        tokens[i] + "\n",
			fmt.Sprintf("only-%d.txt", i):      "mine\n",
			fmt.Sprintf("dir%d/nested.txt", i): tokens[i] + "\n",
		} {
			p := filepath.Join(dirs[i], name)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	script := `tok=$1; i=$2
echo "TOKEN $tok"
check() {
	[ "$(cat token.txt)" = "$tok" ] && [ "$(ls -d only-*.txt dir*/ | tr '\n' ' ')" = "dir$i/ only-$i.txt " ] && [ "$(cat dir$i/nested.txt)" = "$tok" ]
}
check || { echo "INTERLEAVED at start: $(cat token.txt) $(ls)"; exit 99; }
sleep 0.3
check || { echo "INTERLEAVED later: $(cat token.txt) $(ls)"; exit 98; }
exit $((10 + i))`
	procs := make([]*proc, concRuns)
	var startWG sync.WaitGroup
	startWG.Add(concRuns)
	for i := range concRuns {
		go func() {
			defer startWG.Done()
			procs[i] = w.start(dirs[i], nil, "run", "--id", l.slug, "--reclaim", "--", "sh", "-c", script, "sh", tokens[i], itoa(i))
		}()
	}
	startWG.Wait()
	results := make([]result, concRuns)
	for i, p := range procs {
		results[i] = p.wait(cmdTimeout)
	}
	runIDs := map[string]int{}
	for i, r := range results {
		if r.code != 10+i {
			t.Errorf("run %d: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", i, r.code, 10+i, r.stdout, r.stderr)
		}
		if strings.TrimSpace(r.stdout) != "TOKEN "+tokens[i] {
			t.Errorf("run %d stdout = %q, want only its own token", i, r.stdout)
		}
		for j, tok := range tokens {
			if j != i && strings.Contains(r.stdout+r.stderr, tok) {
				t.Errorf("run %d output carries token of run %d", i, j)
			}
		}
		runIDs[runID(t, r)] = i
	}
	if len(runIDs) != concRuns {
		t.Errorf("%d distinct run IDs, want %d", len(runIDs), concRuns)
	}
	// No lost or mixed-up history record, no corrupted claim.
	hist := w.history("--lease", l.id)
	if len(hist) != concRuns {
		t.Errorf("history has %d records, want %d: %+v", len(hist), concRuns, hist)
	}
	for _, h := range hist {
		i, ok := runIDs[h.ID]
		if !ok {
			t.Errorf("unknown run in history: %+v", h)
			continue
		}
		if h.State != "failed" || h.ExitCode == nil || *h.ExitCode != 10+i {
			t.Errorf("history %s (run %d) = %s exit %s, want failed %d", h.ID, i, h.State, exitOf(h), 10+i)
		}
		logs := w.must("logs", h.ID).stdout
		if !strings.Contains(logs, tokens[i]) {
			t.Errorf("logs %s lack token %d: %q", h.ID, i, logs)
		}
		for j, tok := range tokens {
			if j != i && strings.Contains(logs, tok) {
				t.Errorf("logs %s carry the token of run %d", h.ID, j)
			}
		}
	}
	cl := w.claims()
	if len(cl.Claims) != 1 || cl.Claims[0].LeaseID != l.id || len(cl.Problems) != 0 {
		t.Errorf("claims after concurrent runs = %+v", cl)
	}
	// The last --reclaim bound the lease to another checkout: stopping it
	// from this one needs --reclaim too.
	if r := w.crabbox("stop", l.id); r.code != 2 || !strings.Contains(r.stderr, "--reclaim") {
		t.Errorf("stop of a lease another checkout claimed: exit %d\n%s", r.code, r.stderr)
	}
	w.must("stop", "--reclaim", l.id)
	w.assertReleased(l.id, l.workspace)
}

// 4 parallel warmups in one repo, all asking for the same slug: distinct
// leases, workspaces and slugs, valid claims; 4 parallel stops release all.
func TestConcurrentWarmups(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	const n = 4
	procs := make([]*proc, n)
	for i := range n {
		procs[i] = w.start("", nil, "warmup", "--slug", "e2e-par")
	}
	type got struct{ id, slug, ws string }
	var leases []got
	for _, p := range procs {
		r := p.wait(cmdTimeout)
		pm := workspaceRe.FindStringSubmatch(r.stderr)
		if pm != nil {
			ws := pm[2]
			t.Cleanup(func() { w.deleteWorkspace(ws) })
		}
		lm := leasedRe.FindStringSubmatch(r.stdout)
		if r.code != 0 || lm == nil || pm == nil {
			t.Errorf("parallel warmup: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			continue
		}
		leases = append(leases, got{lm[1], lm[2], pm[2]})
	}
	ids, slugs, names := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, g := range leases {
		ids[g.id], slugs[g.slug], names[g.ws] = true, true, true
	}
	if len(ids) != n || len(names) != n {
		t.Errorf("parallel warmups share leases or workspaces: %+v", leases)
	}
	if len(slugs) != n {
		t.Errorf("parallel warmups got duplicate slugs: %+v", leases)
	}
	cl := w.claims()
	if len(cl.Claims) != n {
		t.Errorf("claims = %+v, want %d", cl, n)
	}
	for _, g := range leases {
		if row := w.coderRow(g.ws); row == nil || row.Status != "running" {
			t.Errorf("workspace %s = %+v", g.ws, row)
		}
	}
	stops := make([]*proc, len(leases))
	for i, g := range leases {
		stops[i] = w.start("", nil, "stop", g.id)
	}
	for _, p := range stops {
		if r := p.wait(cmdTimeout); r.code != 0 {
			t.Errorf("parallel stop: exit %d\n%s", r.code, r.stderr)
		}
	}
	for _, g := range leases {
		w.assertReleased(g.id, g.ws)
	}
}

func exitOf(h histRec) string {
	if h.ExitCode == nil {
		return "<nil>"
	}
	return itoa(*h.ExitCode)
}
