//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func sha256File(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// runsDir is the world's run history.
func (w *world) runsDir() string { return filepath.Join(w.home, ".local", "state", "crabbox", "runs") }

type artifactsJSON struct {
	Run       string `json:"run"`
	Dir       string `json:"dir"`
	Artifacts []struct {
		Path   string `json:"path"`
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	} `json:"artifacts"`
}

// The command that writes the acceptance outputs: 5 MB of random bytes in
// out/a.bin and text files under cov/ (one a level down), then exits with
// $1.
const writeArtifacts = `mkdir -p out cov/sub && head -c 5242880 /dev/urandom > out/a.bin && echo one > cov/one.txt && echo two > cov/two.txt && echo deep > cov/sub/deep.txt && exit "$1"`

var nextRe = regexp.MustCompile(`(?m)^  next: (crabbox .*)$`)

// Artifacts, required artifacts, downloads, confinement, failure bundles
// and the digest, for every provider.
func TestArtifactsAndBundles(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			w := b.world(t)
			id := b.warm(w, "e2e-art-"+b.name)
			remote := b.remoteDir(w, id)
			globs := []string{"--artifact-glob", "out/*", "--artifact-glob", "cov/**"}

			// Passed and failed: the local copies equal the remote files.
			for _, exit := range []int{0, 3} {
				args := append(append([]string{"run", "--id", id, "--timing-json"}, globs...), "--", "sh", "-c", writeArtifacts, "sh", itoa(exit))
				r := w.crabbox(args...)
				wantCode(t, r, exit, "run writing artifacts, exit "+itoa(exit))
				run := runID(t, r)
				if m := regexp.MustCompile(`"artifactsMs":(\d+)`).FindStringSubmatch(r.stderr); m != nil {
					t.Logf("%s: artifacts phase %s ms for 4 files, 5 MB", b.name, m[1])
				}
				list := decodeJSON[artifactsJSON](t, w.must("artifacts", run, "--json").stdout)
				got := map[string]string{}
				for _, a := range list.Artifacts {
					got[a.Path] = a.SHA256
				}
				for _, p := range []string{"out/a.bin", "cov/one.txt", "cov/two.txt", "cov/sub/deep.txt"} {
					want := sha256File(t, filepath.Join(remote, p))
					if got[p] != want {
						t.Errorf("exit %d: manifest sha of %s = %q, remote %s", exit, p, got[p], want)
					}
					if local := sha256File(t, filepath.Join(w.runsDir(), run, "artifacts", p)); local != want {
						t.Errorf("exit %d: local copy of %s has sha %s, remote %s", exit, p, local, want)
					}
				}
				if len(list.Artifacts) != 4 {
					t.Errorf("exit %d: %d artifacts, want 4: %+v", exit, len(list.Artifacts), list.Artifacts)
				}
				if fi, err := os.Stat(filepath.Join(w.runsDir(), run, "artifacts", "out", "a.bin")); err != nil || fi.Mode().Perm() != 0o600 {
					t.Errorf("artifact file mode: %v %v", fi, err)
				}
				dest := filepath.Join(t.TempDir(), "x")
				w.must("artifacts", run, "--extract", dest)
				if sha256File(t, filepath.Join(dest, "out", "a.bin")) != got["out/a.bin"] {
					t.Error("extracted copy differs")
				}
				if h := w.must("history", "--limit", "1").stdout; !strings.Contains(h, " artifacts=4 ") {
					t.Errorf("history lacks the count: %s", h)
				}
				if exit == 3 {
					// The kept lease's digest offers ssh: it works.
					hasSSH := false
					for _, m := range nextRe.FindAllStringSubmatch(r.stderr, -1) {
						hasSSH = hasSSH || strings.HasPrefix(m[1], "crabbox ssh ")
						wantCode(t, w.crabbox(strings.Fields(m[1])[1:]...), 0, "digest next step "+m[1])
					}
					if !hasSSH {
						t.Errorf("the kept lease's digest offers no ssh:\n%s", r.stderr)
					}
				}
			}

			// 1000 small files (measured), and the bound: past
			// artifacts.maxFiles they are counted, not fetched.
			many := `mkdir -p many && i=0; while [ $i -lt 1000 ]; do echo $i > many/f$i.txt; i=$((i+1)); done`
			r := w.crabbox("run", "--id", id, "--timing-json", "--artifact-glob", "many/*", "--", "sh", "-c", many)
			wantCode(t, r, 0, "1000 files")
			if m := regexp.MustCompile(`"artifactsMs":(\d+)`).FindStringSubmatch(r.stderr); m != nil {
				t.Logf("%s: artifacts phase %s ms for 1000 small files", b.name, m[1])
			}
			if n := len(decodeJSON[artifactsJSON](t, w.must("artifacts", runID(t, r), "--json").stdout).Artifacts); n != 1000 {
				t.Errorf("%d of 1000 files fetched", n)
			}
			r = w.crabboxEnv([]string{"CRABBOX_ARTIFACTS_MAX_FILES=600"}, "run", "--id", id, "--artifact-glob", "many/*", "--", "true")
			wantCode(t, r, 0, "over artifacts.maxFiles")
			if !strings.Contains(r.stderr, "fetched 600 of 1000 matching files; 400 ") || !strings.Contains(r.stderr, "artifacts.maxFiles=600") {
				t.Errorf("no bound warning:\n%s", r.stderr)
			}
			if n := len(decodeJSON[artifactsJSON](t, w.must("artifacts", runID(t, r), "--json").stdout).Artifacts); n != 600 {
				t.Errorf("%d files fetched with maxFiles=600", n)
			}

			// --require-artifact without a match fails a passing run.
			r = w.crabbox("run", "--id", id, "--require-artifact", "missing.txt", "--", "true")
			wantCode(t, r, 1, "--require-artifact missing.txt")
			if !strings.Contains(r.stderr, "--require-artifact missing.txt matched no regular file") {
				t.Errorf("message does not name the glob:\n%s", r.stderr)
			}
			if recs := w.history("--limit", "1"); recs[0].State != "failed" || recs[0].ExitCode == nil || *recs[0].ExitCode != 1 {
				t.Errorf("recorded %+v", recs[0])
			}
			// Positive control: a match passes.
			wantCode(t, w.crabbox("run", "--id", id, "--require-artifact", "cov/*.txt", "--", "true"), 0, "--require-artifact with a match")

			// A ../ glob is refused before anything runs.
			marker := filepath.Join(t.TempDir(), "ran")
			r = w.crabbox("run", "--id", id, "--artifact-glob", "../x", "--", "touch", marker)
			wantCode(t, r, 2, "--artifact-glob ../x")
			if _, err := os.Stat(marker); err == nil {
				t.Error("the command ran despite the refused glob")
			}

			// A symlink out of the workdir is refused, the file beside it kept.
			outside := filepath.Join(t.TempDir(), "outside-secret.txt")
			secretText := "outside-" + randHex(t)
			if err := os.WriteFile(outside, []byte(secretText), 0o644); err != nil {
				t.Fatal(err)
			}
			r = w.crabbox("run", "--id", id, "--artifact-glob", "links/*", "--require-artifact", "links/out", "--",
				"sh", "-c", `mkdir -p links && ln -sf "$1" links/out && echo in > links/in.txt`, "sh", outside)
			wantCode(t, r, 1, "symlink out as the only required match")
			run := runID(t, r)
			if !strings.Contains(r.stderr, "links/out resolves outside the workdir") {
				t.Errorf("no refusal note:\n%s", r.stderr)
			}
			if hit := grepDir(t, filepath.Join(w.runsDir(), run), secretText); hit != "" {
				t.Errorf("the outside file reached %s", hit)
			}
			if _, err := os.Stat(filepath.Join(w.runsDir(), run, "artifacts", "links", "in.txt")); err != nil {
				t.Errorf("the file beside the link was not fetched: %v", err)
			}

			// --download writes the remote file locally after a pass.
			r = w.crabbox("run", "--id", id, "--download", "out/a.bin=dl/a.bin", "--", "sh", "-c", writeArtifacts, "sh", "0")
			wantCode(t, r, 0, "--download")
			if sha256File(t, filepath.Join(w.repo, "dl", "a.bin")) != sha256File(t, filepath.Join(remote, "out", "a.bin")) {
				t.Error("downloaded file differs from the remote one")
			}
			os.RemoveAll(filepath.Join(w.repo, "dl"))
			wantCode(t, w.crabbox("run", "--id", id, "--download", "out/a.bin=x.bin", "--download", "cov/one.txt=./x.bin", "--", "true"), 2, "colliding downloads")

			w.must("stop", id)

			// A failing one-shot run with a forwarded secret.
			secret := "e2e-secret-" + randHex(t)
			sum := sha256.Sum256([]byte(secret))
			r = w.crabboxEnv([]string{"E2E_TOKEN=" + secret}, "run", "--allow-env", "E2E_TOKEN", "--artifact-glob", "out/*", "--",
				"sh", "-c", `printf %s "$E2E_TOKEN" | sha256sum; echo "leaked: $E2E_TOKEN" >&2; mkdir -p out; echo r > out/r.txt; exit 3`)
			wantCode(t, r, 3, "failing one-shot run")
			b.released(t, w, r)
			// Positive control: the command got the secret.
			if !strings.Contains(r.stdout, hex.EncodeToString(sum[:])) {
				t.Fatalf("the secret did not reach the command:\n%s", r.stdout)
			}
			run = runID(t, r)
			lease := runLease(t, r)
			if !strings.Contains(r.stderr, "run "+run+" failed in step command (exit 3)") {
				t.Errorf("no digest:\n%s", r.stderr)
			}
			nexts := nextRe.FindAllStringSubmatch(r.stderr, -1)
			if len(nexts) == 0 {
				t.Fatalf("no next steps:\n%s", r.stderr)
			}
			for _, m := range nexts {
				if strings.HasPrefix(m[1], "crabbox ssh") || strings.HasPrefix(m[1], "crabbox results") {
					t.Errorf("digest offers %q for a released lease without results", m[1])
				}
				wantCode(t, w.crabbox(strings.Fields(m[1])[1:]...), 0, "digest next step "+m[1])
			}
			// Positive control for the scan: the stored log has the value.
			if !strings.Contains(w.must("logs", run).stdout, "leaked: "+secret) {
				t.Fatal("the log lacks the printed secret (positive control)")
			}
			bundlePath := strings.TrimSpace(w.must("logs", run, "--bundle").stdout)
			raw, err := os.ReadFile(bundlePath)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(raw, []byte(secret)) {
				t.Error("the bundle bytes hold the secret")
			}
			files := untarGz(t, raw)
			for name, data := range files {
				if bytes.Contains(data, []byte(secret)) {
					t.Errorf("bundle entry %s holds the secret", name)
				}
			}
			var s struct {
				RunID      string   `json:"runId"`
				FailedStep string   `json:"failedStep"`
				ExitCode   int      `json:"exitCode"`
				Argv       []string `json:"argv"`
				EnvNames   []string `json:"envNames"`
				Git        struct {
					Head string `json:"head"`
				} `json:"git"`
				Lease struct {
					ID, Provider, Workspace string
					Released                bool
				} `json:"lease"`
				Artifacts []struct{ Path string } `json:"artifacts"`
			}
			if err := json.Unmarshal(files["summary.json"], &s); err != nil {
				t.Fatalf("summary.json: %v\n%s", err, files["summary.json"])
			}
			head, _ := runCmd(cmdTimeout, w.repo, w.env, "git", "rev-parse", "HEAD")
			if s.RunID != run || s.FailedStep != "command" || s.ExitCode != 3 || s.Lease.ID != lease || s.Lease.Provider != b.name ||
				s.Lease.Workspace == "" || !s.Lease.Released || s.Git.Head != strings.TrimSpace(string(head)) ||
				len(s.Argv) != 3 || s.Argv[0] != "sh" || len(s.Artifacts) != 1 || s.Artifacts[0].Path != "out/r.txt" {
				t.Errorf("summary does not match the run:\n%s", files["summary.json"])
			}
			hasName := false
			for _, n := range s.EnvNames {
				hasName = hasName || n == "E2E_TOKEN"
			}
			if !hasName {
				t.Errorf("env names %v lack E2E_TOKEN", s.EnvNames)
			}
			if !strings.Contains(string(files["log-tail.txt"]), "leaked: [redacted E2E_TOKEN]") {
				t.Errorf("log tail:\n%s", files["log-tail.txt"])
			}
		})
	}
}

func randHex(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func untarGz(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	out := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[filepath.Base(h.Name)] = b
	}
}
