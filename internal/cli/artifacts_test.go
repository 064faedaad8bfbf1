package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/runs"
)

// Bad artifact flags and colliding downloads are usage errors (exit 2)
// before anything runs: no provider call.
func TestRunArtifactFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--artifact-glob", "../x"}, "leaves the remote workdir"},
		{[]string{"--artifact-glob", "/etc/*"}, "absolute"},
		{[]string{"--require-artifact", ".crabbox/env/*"}, ".crabbox"},
		{[]string{"--download", "a.bin"}, "want REMOTE=LOCAL"},
		{[]string{"--download", "../a=a"}, "leaves the remote workdir"},
		{[]string{"--download", "a=x", "--download", "b=./x"}, "name the same local file"},
		{[]string{"--download", "a=out", "--download", "b=out/x"}, "needs as a directory"},
	} {
		te := newTestEnv(t)
		args := append(append([]string{"run", "--provider", "coder"}, tc.args...), "--", "true")
		code, _, errOut := te.run(t, args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
		for _, c := range te.fake.Argvs() {
			if !strings.HasPrefix(c, "git ") {
				t.Errorf("%v: external call %s", tc.args, c)
			}
		}
	}
	te := newTestEnv(t)
	if code, _, errOut := te.run(t, "run", "--provider", "coder", "--sync-only", "--artifact-glob", "x"); code != 2 || !strings.Contains(errOut, "--sync-only") {
		t.Errorf("--sync-only with artifacts: %d %s", code, errOut)
	}
}

func shaHex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// seedArtifacts records a finished run with two fetched files.
func seedArtifacts(t *testing.T, s *runs.Store) (string, []runs.Artifact) {
	t.Helper()
	r, err := s.Start(runs.Record{Provider: "coder", Command: []string{"make"}, StartedAt: histT0})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"out/a.bin": "aaaa", "cov/x.txt": "x"}
	var list []runs.Artifact
	for _, p := range []string{"out/a.bin", "cov/x.txt"} {
		writeFile(t, filepath.Join(s.ArtifactsDir(r.ID()), p), files[p])
		list = append(list, runs.Artifact{Path: p, Size: int64(len(files[p])), SHA256: shaHex([]byte(files[p]))})
	}
	if err := r.Update(func(rec *runs.Record) { rec.Artifacts = list }); err != nil {
		t.Fatal(err)
	}
	if err := r.Finish(runs.StateSucceeded, 0); err != nil {
		t.Fatal(err)
	}
	return r.ID(), list
}

func TestArtifactsCommand(t *testing.T) {
	te, store := histEnv(t)
	id, list := seedArtifacts(t, store)

	code, out, errOut := te.run(t, "artifacts", id)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "artifacts run="+id+" files=2 bytes=5 dir=") ||
		lines[1] != "4 "+list[0].SHA256+" out/a.bin" || lines[2] != "1 "+list[1].SHA256+" cov/x.txt" {
		t.Errorf("list:\n%s", out)
	}

	code, out, _ = te.run(t, "artifacts", id, "--json")
	var j struct {
		Run       string          `json:"run"`
		Dir       string          `json:"dir"`
		Artifacts []runs.Artifact `json:"artifacts"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &j) != nil || j.Run != id || j.Dir != store.ArtifactsDir(id) || len(j.Artifacts) != 2 || j.Artifacts[0] != list[0] {
		t.Errorf("json %d %s", code, out)
	}

	dest := filepath.Join(t.TempDir(), "x")
	if code, _, errOut := te.run(t, "artifacts", id, "--extract", dest); code != 0 || !strings.Contains(errOut, "extracted 2 files") {
		t.Fatalf("extract: %d %s", code, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "out", "a.bin")); err != nil || string(b) != "aaaa" {
		t.Errorf("extracted: %q %v", b, err)
	}

	// A stored file that changed is not extracted (exit 1, named).
	writeFile(t, filepath.Join(store.ArtifactsDir(id), "cov", "x.txt"), "changed")
	if code, _, errOut := te.run(t, "artifacts", id, "--extract", t.TempDir()); code != 1 || !strings.Contains(errOut, "cov/x.txt") {
		t.Errorf("changed artifact: %d %s", code, errOut)
	}

	// The run's count shows in history and results.
	_, out, _ = te.run(t, "history")
	if !strings.Contains(out, " artifacts=2 command=make") {
		t.Errorf("history: %s", out)
	}
	_, out, _ = te.run(t, "results", id)
	if !strings.Contains(out, "artifacts files=2 bytes=5 (crabbox artifacts "+id+")") {
		t.Errorf("results: %s", out)
	}

	// A run without artifacts.
	other := histAddRun(t, store, histRun{rec: runs.Record{Provider: "coder", Command: []string{"true"}, StartedAt: histT0}, state: runs.StateSucceeded})
	if code, out, _ := te.run(t, "artifacts", other); code != 0 || !strings.Contains(out, "no artifacts recorded") {
		t.Errorf("none: %d %s", code, out)
	}
	if code, out, _ := te.run(t, "artifacts", other, "--json"); code != 0 || !strings.Contains(out, `"artifacts": []`) {
		t.Errorf("none json: %d %s", code, out)
	}
	if _, out, _ := te.run(t, "history"); strings.Count(out, "artifacts=") != 1 {
		t.Errorf("history shows artifacts= for a run without any:\n%s", out)
	}
	if code, _, _ := te.run(t, "artifacts", "run_ffffffffffff"); code != 5 {
		t.Errorf("unknown run: exit %d", code)
	}
	histNoCalls(t, te)
}

func TestLogsBundle(t *testing.T) {
	te, store := histEnv(t)
	failed := histAddRun(t, store, histRun{rec: runs.Record{Provider: "coder", Command: []string{"false"}, StartedAt: histT0}, state: runs.StateFailed, exit: 1})
	code, _, errOut := te.run(t, "logs", failed, "--bundle")
	if code != 5 || !strings.Contains(errOut, "has no failure bundle") || !strings.Contains(errOut, "next: `crabbox logs "+failed+"`") {
		t.Errorf("without a bundle: %d %s", code, errOut)
	}
	writeFile(t, store.BundlePath(failed), "tgz")
	code, out, _ := te.run(t, "logs", failed, "--bundle")
	if code != 0 || strings.TrimSpace(out) != store.BundlePath(failed) {
		t.Errorf("with a bundle: %d %q", code, out)
	}
	ok := histAddRun(t, store, histRun{rec: runs.Record{Provider: "coder", Command: []string{"true"}, StartedAt: histT0}, state: runs.StateSucceeded})
	if code, _, errOut := te.run(t, "logs", ok, "--bundle"); code != 5 || !strings.Contains(errOut, "only for failed or interrupted runs") {
		t.Errorf("succeeded run: %d %s", code, errOut)
	}
}
