package runner

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/artifacts"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/provider"
	"github.com/crabbox-dev/crabbox/internal/runs"
)

func fileSum(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func (h *harness) remoteWorkdir() string {
	return filepath.Join(h.workDir, "cbx_0123456789ab", filepath.Base(h.repo))
}

const writeOutputs = `mkdir -p out cov/deep && head -c 300000 /dev/urandom > out/a.bin && echo c1 > cov/one.txt && echo c2 > cov/deep/two.txt`

// Artifacts are fetched whether the command passed or failed (its exit
// code unchanged), with a manifest whose SHA-256 matches the remote file.
func TestRunArtifactsPassedAndFailed(t *testing.T) {
	for _, exit := range []int{0, 3} {
		h := newHarness(t)
		s := h.spec("sh", "-c", writeOutputs+"; exit "+itoa(exit))
		s.Artifacts = ArtifactSpec{Globs: []string{"out/*", "cov/**"}}
		out, err := Run(context.Background(), h.deps, s)
		if exitcode.Code(err) != exit || out.Exit != exit {
			t.Fatalf("exit %d: err %v\n%s", exit, err, h.notes)
		}
		rec, _ := h.store.Get(out.RunID)
		var paths []string
		for _, a := range rec.Artifacts {
			paths = append(paths, a.Path)
			if want := fileSum(t, filepath.Join(h.remoteWorkdir(), a.Path)); a.SHA256 != want {
				t.Errorf("exit %d: %s sha %s, remote %s", exit, a.Path, a.SHA256, want)
			}
			if got := fileSum(t, filepath.Join(h.store.ArtifactsDir(out.RunID), a.Path)); got != a.SHA256 {
				t.Errorf("exit %d: local %s sha %s, manifest %s", exit, a.Path, got, a.SHA256)
			}
		}
		if !slices.Equal(paths, []string{"out/a.bin", "cov/deep/two.txt", "cov/one.txt"}) {
			t.Errorf("exit %d: artifacts %q\n%s", exit, paths, h.notes)
		}
		if !strings.Contains(h.notes.String(), "artifacts: 3 files (") {
			t.Errorf("no artifacts note:\n%s", h.notes)
		}
		if exit == 0 && rec.FailedStep != "" || exit == 3 && rec.FailedStep != StepCommand {
			t.Errorf("exit %d: failed step %q", exit, rec.FailedStep)
		}
	}
}

// --require-artifact: a passing command without a match fails the run
// (exit 1, recorded failed, the message names the pattern); with a match
// it passes (positive control); a failing command keeps its own code.
func TestRunRequireArtifact(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cmd     string
		require string
		want    int
	}{
		{"missing", "true", "missing.txt", 1},
		{"present", "echo ok > proof.txt", "proof.txt", 0},
		{"a directory is no match", "mkdir -p proof.txt", "proof.txt", 1},
		{"failed command keeps its code", "exit 4", "missing.txt", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			s := h.spec("sh", "-c", tc.cmd)
			s.Artifacts = ArtifactSpec{Require: []string{tc.require}}
			out, err := Run(context.Background(), h.deps, s)
			if exitcode.Code(err) != tc.want || out.Exit != tc.want {
				t.Fatalf("err %v (exit %d), want %d\n%s", err, exitcode.Code(err), tc.want, h.notes)
			}
			rec, _ := h.store.Get(out.RunID)
			if tc.want == 1 {
				if !strings.Contains(err.Error(), "--require-artifact "+tc.require) || rec.State != runs.StateFailed || rec.FailedStep != StepArtifacts ||
					rec.ExitCode == nil || *rec.ExitCode != 1 {
					t.Errorf("err %v record %+v", err, rec)
				}
			}
			if tc.want == 0 && (len(rec.Artifacts) != 1 || rec.State != runs.StateSucceeded) {
				t.Errorf("record %+v", rec)
			}
		})
	}
}

// --download writes the file after a successful command only; a missing
// remote file fails the run (exit 1).
func TestRunDownloads(t *testing.T) {
	h := newHarness(t)
	local := filepath.Join(t.TempDir(), "dl", "a.bin")
	s := h.spec("sh", "-c", writeOutputs)
	s.Artifacts = ArtifactSpec{Downloads: []artifacts.Download{{Remote: "out/a.bin", Local: local}}}
	if _, err := Run(context.Background(), h.deps, s); err != nil {
		t.Fatalf("run: %v\n%s", err, h.notes)
	}
	if fileSum(t, local) != fileSum(t, filepath.Join(h.remoteWorkdir(), "out", "a.bin")) {
		t.Error("download differs")
	}

	h = newHarness(t)
	local = filepath.Join(t.TempDir(), "b.bin")
	s = h.spec("sh", "-c", writeOutputs+"; exit 2")
	s.Artifacts = ArtifactSpec{Downloads: []artifacts.Download{{Remote: "out/a.bin", Local: local}}}
	if _, err := Run(context.Background(), h.deps, s); exitcode.Code(err) != 2 {
		t.Fatalf("err %v", err)
	}
	if _, err := os.Stat(local); err == nil {
		t.Error("downloaded after a failed command")
	}

	h = newHarness(t)
	s = h.spec("true")
	s.Artifacts = ArtifactSpec{Downloads: []artifacts.Download{{Remote: "nope.bin", Local: filepath.Join(t.TempDir(), "n")}}}
	_, err := Run(context.Background(), h.deps, s)
	if exitcode.Code(err) != 1 || !strings.Contains(err.Error(), "nope.bin does not exist") {
		t.Errorf("missing download: %v", err)
	}
}

func readBundle(t *testing.T, p string) (map[string][]byte, []byte) {
	t.Helper()
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	gz, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	out := map[string][]byte{}
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			return out, raw
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[filepath.Base(hd.Name)] = b
	}
}

// A failed one-shot run leaves a bundle that matches the run and holds no
// forwarded value (the command provably got it and printed it); the
// digest names the step, the exit code, the failing tests and only next
// steps that apply (no ssh: the lease was released).
func TestRunFailureBundleAndDigest(t *testing.T) {
	h := newHarness(t)
	for _, args := range [][]string{{"init", "-q"}, {"-c", "user.email=e@x", "-c", "user.name=e", "commit", "-q", "--allow-empty", "-m", "x"}} {
		if out, err := exec.Command("git", append([]string{"-C", h.repo}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git: %v %s", err, out)
		}
	}
	os.WriteFile(filepath.Join(h.repo, "dirty.go"), []byte("x"), 0o644)
	const secret = "Zq9-very-secret-4711"
	junit := `<testsuite name="pkg" tests="2" failures="1"><testcase name="TestOK"/><testcase name="TestBad"><failure message="boom"/></testcase></testsuite>`
	s := h.spec("sh", "-c", `[ "$API_TOKEN" = "`+secret+`" ] && echo "token=$API_TOKEN"; echo '`+junit+`' > junit.xml; mkdir -p out; echo a > out/a.txt; exit 3`)
	s.Env = map[string]string{"API_TOKEN": secret, "CI": "true"}
	s.JUnit = []string{"junit.xml"}
	s.Artifacts = ArtifactSpec{Globs: []string{"out/*"}}
	out, err := Run(context.Background(), h.deps, s)
	if exitcode.Code(err) != 3 {
		t.Fatalf("err %v\n%s", err, h.notes)
	}
	// Positive control: the command got the value (and printed it).
	if !strings.Contains(h.out.String(), "token="+secret) {
		t.Fatalf("the secret did not reach the command: %q", h.out)
	}
	if out.Bundle != h.store.BundlePath(out.RunID) {
		t.Fatalf("bundle %q", out.Bundle)
	}
	if fi, err := os.Stat(out.Bundle); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("bundle file: %v %v", fi, err)
	}
	files, raw := readBundle(t, out.Bundle)
	for name, b := range files {
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the secret", name)
		}
	}
	if bytes.Contains(raw, []byte(secret)) {
		t.Error("the bundle bytes hold the secret")
	}
	var sum map[string]any
	if err := json.Unmarshal(files["summary.json"], &sum); err != nil {
		t.Fatal(err)
	}
	rec, _ := h.store.Get(out.RunID)
	git := sum["git"].(map[string]any)
	if sum["runId"] != out.RunID || sum["failedStep"] != StepCommand || sum["exitCode"] != 3.0 ||
		sum["lease"].(map[string]any)["id"] != "cbx_0123456789ab" || sum["lease"].(map[string]any)["provider"] != "fake" ||
		len(git["head"].(string)) != 40 || !strings.Contains(string(files["summary.json"]), "dirty.go") {
		t.Errorf("summary %s", files["summary.json"])
	}
	names := sum["envNames"].([]any)
	if !slices.Contains(names, any("API_TOKEN")) || !slices.Contains(names, any("CRABBOX_RUN_ID")) {
		t.Errorf("env names %v", names)
	}
	if len(sum["artifacts"].([]any)) != 1 || sum["results"] == nil || !strings.Contains(string(files["log-tail.txt"]), "token=[redacted API_TOKEN]") {
		t.Errorf("bundle lacks artifacts, results or the log tail:\n%s\n%s", files["summary.json"], files["log-tail.txt"])
	}
	if !json.Valid(files["run.json"]) || !strings.Contains(string(files["run.json"]), rec.ID) {
		t.Errorf("run.json %s", files["run.json"])
	}
	d := out.Digest
	if d == nil || d.Step != StepCommand || d.Exit != 3 || len(d.Tests) != 1 || !strings.Contains(d.Tests[0], "TestBad: boom") {
		t.Fatalf("digest %+v", d)
	}
	want := []string{"crabbox logs " + out.RunID, "crabbox results " + out.RunID, "crabbox artifacts " + out.RunID}
	if !slices.Equal(d.Next, want) {
		t.Errorf("next %q, want %q", d.Next, want)
	}
}

// A passing run writes no bundle and has no digest; a kept lease's digest
// offers ssh; a failed acquisition's digest offers only the log.
func TestRunDigestNextSteps(t *testing.T) {
	h := newHarness(t)
	out, err := Run(context.Background(), h.deps, h.spec("true"))
	if err != nil || out.Digest != nil || out.Bundle != "" {
		t.Fatalf("passing run: %v %+v", err, out)
	}
	if _, err := os.Stat(h.store.BundlePath(out.RunID)); err == nil {
		t.Error("a passing run has a bundle")
	}

	h = newHarness(t)
	s := h.spec("sh", "-c", "exit 5")
	s.Ident = "blue"
	out, _ = Run(context.Background(), h.deps, s)
	if out.Digest == nil || !slices.Equal(out.Digest.Next, []string{"crabbox logs " + out.RunID, "crabbox ssh --provider fake --id blue"}) {
		t.Errorf("kept lease next %+v", out.Digest)
	}

	h = newHarness(t)
	h.prov.acquireErr = exitcode.Errorf(exitcode.NotFound, "no machine")
	out, _ = Run(context.Background(), h.deps, h.spec("true"))
	if out.Digest == nil || out.Digest.Step != StepLease || !slices.Equal(out.Digest.Next, []string{"crabbox logs " + out.RunID}) {
		t.Errorf("acquire failure digest %+v", out.Digest)
	}
	if out.Bundle == "" {
		t.Error("no bundle for a failed acquisition")
	}
	lines := strings.Join(out.Digest.Lines(), "\n")
	if !strings.Contains(lines, "failed in step lease (exit 5)") || !strings.Contains(lines, "failure bundle: "+out.Bundle) {
		t.Errorf("digest lines:\n%s", lines)
	}
}

// NextSteps never offers ssh for a released lease, a failed release or a
// lease refused while leasing.
func TestNextSteps(t *testing.T) {
	l := &provider.Lease{ID: "cbx_0123456789ab", Slug: "blue"}
	rec := runs.Record{ID: "run_0123456789ab", Provider: "coder"}
	for _, tc := range []struct {
		name string
		out  Outcome
		step string
		ssh  bool
	}{
		{"kept", Outcome{Lease: l}, StepCommand, true},
		{"released", Outcome{Lease: l, Released: true}, StepCommand, false},
		{"release failed", Outcome{Lease: l, ReleaseErr: io.EOF}, StepCommand, false},
		{"refused while leasing", Outcome{Lease: l}, StepLease, false},
		{"no lease", Outcome{}, StepLease, false},
	} {
		got := NextSteps(rec, tc.out, tc.step)
		has := slices.Contains(got, "crabbox ssh --provider coder --id blue")
		if has != tc.ssh || got[0] != "crabbox logs run_0123456789ab" {
			t.Errorf("%s: %q", tc.name, got)
		}
	}
}

// An interrupted run leaves a bundle; its digest says interrupted, in
// the command step, exit 130.
func TestRunInterruptedBundle(t *testing.T) {
	h := newHarness(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Outcome, 1)
	go func() {
		out, _ := Run(ctx, h.deps, h.spec("sh", "-c", "echo $$ > "+pidFile+"; exec sleep 60"))
		done <- out
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, _ := os.ReadFile(pidFile); len(b) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the command never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	var out Outcome
	select {
	case out = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after the interrupt")
	}
	if out.State != "interrupted" || out.Digest == nil || out.Digest.Step != StepCommand || out.Digest.Exit != exitcode.Interrupted {
		t.Fatalf("outcome %+v digest %+v", out, out.Digest)
	}
	if _, err := os.Stat(out.Bundle); err != nil {
		t.Errorf("bundle: %v", err)
	}
	if !strings.Contains(strings.Join(out.Digest.Lines(), "\n"), "interrupted in step command (exit 130)") {
		t.Errorf("digest %q", out.Digest.Lines())
	}
}

// Matches past the bounds are not fetched; the warning names the bounds
// and how to raise them; the run's outcome is the command's.
func TestRunArtifactBounds(t *testing.T) {
	h := newHarness(t)
	s := h.spec("sh", "-c", "mkdir -p o && for i in 1 2 3 4 5; do echo $i > o/f$i; done")
	s.Artifacts = ArtifactSpec{Globs: []string{"o/*"}, MaxFiles: 3}
	out, err := Run(context.Background(), h.deps, s)
	if err != nil {
		t.Fatalf("%v\n%s", err, h.notes)
	}
	rec, _ := h.store.Get(out.RunID)
	if len(rec.Artifacts) != 3 {
		t.Errorf("%d artifacts", len(rec.Artifacts))
	}
	if !strings.Contains(h.notes.String(), "fetched 3 of 5 matching files; 2 (4 bytes) left out: over artifacts.maxFiles=3") ||
		!strings.Contains(h.notes.String(), "CRABBOX_ARTIFACTS_MAX_FILES") {
		t.Errorf("no bound warning:\n%s", h.notes)
	}
}

// Downloads join the run's local outputs: one file named by a download
// and a capture, or by two downloads (through a symlinked dir, or under
// directories that do not exist yet), or one download inside another's
// file, is refused before anything runs; missing parents are fine for a
// download (it makes them), not for a capture.
func TestLocalOutputsWithDownloads(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	p := func(s string) string { return filepath.Join(dir, s) }
	dl := func(remote, local string) artifacts.Download { return artifacts.Download{Remote: remote, Local: local} }
	for _, tc := range []struct {
		name    string
		capture string
		dls     []artifacts.Download
		want    string
	}{
		{"capture and download", p("x"), []artifacts.Download{dl("a", p("x"))}, "name the same local file"},
		{"two downloads via a symlinked dir", "", []artifacts.Download{dl("a", p("real/f")), dl("b", p("link/f"))}, "name the same local file"},
		{"two downloads under new dirs", "", []artifacts.Download{dl("a", p("real/n/m/f")), dl("b", p("link/n/m/f"))}, "name the same local file"},
		{"a download inside another", "", []artifacts.Download{dl("a", p("out")), dl("b", p("out/x"))}, "needs as a directory"},
		{"the other way round", "", []artifacts.Download{dl("b", p("out/x")), dl("a", p("out"))}, "needs as a directory"},
		{"a download onto a directory", "", []artifacts.Download{dl("a", p("real"))}, "is a directory"},
		{"distinct, under new dirs (positive control)", "", []artifacts.Download{dl("a", p("real/f2")), dl("b", p("x/y"))}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			s := h.spec("echo", "never")
			s.CaptureStdout = tc.capture
			s.Artifacts = ArtifactSpec{Downloads: tc.dls}
			err := CheckLocalOutputs(LocalOutputPaths(s))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			out, err := Run(context.Background(), h.deps, s)
			if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v (exit %d), want exit 2 with %q", err, exitcode.Code(err), tc.want)
			}
			if len(h.prov.calls) != 0 || len(h.lb.calls()) != 0 {
				t.Errorf("ran something: provider %q, exec %q", h.prov.calls, h.lb.calls())
			}
			if _, gerr := h.store.Get(out.RunID); gerr == nil {
				t.Error("a run record was written")
			}
		})
	}
	// A capture still needs its directory; a file in the way of a
	// download's directory is refused.
	if err := CheckLocalOutputs([]LocalOutput{{Flag: "--capture-stdout", Path: p("nope/x")}}); err == nil {
		t.Error("a capture under a missing dir passed")
	}
	os.WriteFile(p("file"), []byte("x"), 0o644)
	if err := CheckLocalOutputs([]LocalOutput{{Flag: "--download a", Path: p("file/x"), MakeDirs: true}}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a download under a file: %v", err)
	}
}

// A release that fails after a passing command is the failed step
// release (exit 7), with a bundle and no ssh offered.
func TestRunReleaseFailureDigest(t *testing.T) {
	h := newHarness(t)
	h.prov.releaseErr = io.ErrUnexpectedEOF
	out, err := Run(context.Background(), h.deps, h.spec("true"))
	if exitcode.Code(err) != exitcode.Transport || out.Digest == nil || out.Digest.Step != StepRelease || out.Digest.Exit != exitcode.Transport {
		t.Fatalf("err %v digest %+v", err, out.Digest)
	}
	if out.Bundle == "" || !slices.Equal(out.Digest.Next, []string{"crabbox logs " + out.RunID}) {
		t.Errorf("bundle %q next %q", out.Bundle, out.Digest.Next)
	}
	if rec, _ := h.store.Get(out.RunID); rec.FailedStep != StepRelease {
		t.Errorf("record failed step %q", rec.FailedStep)
	}
}

// A tunnel lost while the artifacts or the test results are read (a
// master whose keepalives went unanswered under load) costs one retry over
// a new tunnel, not the run's files: every artifact arrives whole, the
// results are recorded, the exit code is the command's. Without the
// retry the manifest lacked the files (seen on a loaded CI machine).
func TestRunAfterCommandTransportRetried(t *testing.T) {
	junit := `<testsuite name="pkg" tests="2" failures="0"><testcase name="A"/><testcase name="B"/></testsuite>`
	for _, tc := range []struct {
		name, fail string // the remote line that fails once with 255
		before     bool   // fail before running it (nothing sent)
	}{
		{"artifacts after sending", "CRABBOX-ARTIFACTS-1-", false},
		{"artifacts before sending", "CRABBOX-ARTIFACTS-1-", true},
		{"results", "wc -c <", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.lb.transport, h.lb.transportOnce, h.lb.transportBefore = tc.fail, true, tc.before
			s := h.spec("sh", "-c", writeOutputs+"; echo '"+junit+"' > junit.xml")
			s.Artifacts = ArtifactSpec{Globs: []string{"out/*", "cov/**"}}
			s.JUnit = []string{"junit.xml"}
			out, err := Run(context.Background(), h.deps, s)
			if err != nil || out.Exit != 0 {
				t.Fatalf("err %v exit %d\n%s", err, out.Exit, h.notes)
			}
			// Positive control: the failure was injected.
			if h.lb.transport != "" {
				t.Fatalf("no remote line matched %q", tc.fail)
			}
			if !strings.Contains(h.notes.String(), "retrying once over a new tunnel") {
				t.Errorf("no retry note:\n%s", h.notes)
			}
			rec, _ := h.store.Get(out.RunID)
			if len(rec.Artifacts) != 3 {
				t.Fatalf("%d artifacts, want 3\n%s", len(rec.Artifacts), h.notes)
			}
			for _, a := range rec.Artifacts {
				want := fileSum(t, filepath.Join(h.remoteWorkdir(), a.Path))
				if a.SHA256 != want || fileSum(t, filepath.Join(h.store.ArtifactsDir(out.RunID), a.Path)) != want {
					t.Errorf("%s: manifest %s, remote %s", a.Path, a.SHA256, want)
				}
			}
			if rec.Results == nil || rec.Results.Tests != 2 {
				t.Errorf("results %+v\n%s", rec.Results, h.notes)
			}
		})
	}
}
