package artifacts

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/runs"
)

// localRemote runs the remote command with sh -c on this machine (the
// "workspace" is a temp dir), like ssh would; prefix is printed first, as
// a chatty login profile would.
type localRemote struct {
	prefix string
	calls  int
}

func (l *localRemote) Run(ctx context.Context, remote string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	l.calls++
	cmd := exec.CommandContext(ctx, "sh", "-c", "printf '%s' \"$0\"; "+remote, l.prefix)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), nil
	}
	return 0, err
}

func needTools(t *testing.T) {
	t.Helper()
	for _, p := range []string{"bash", "realpath", "tar", "xargs", "stat"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed", p)
		}
	}
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func randBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func request(wd, dir string) Request {
	return Request{Workdir: wd, MaxFiles: DefaultMaxFiles, MaxBytes: DefaultMaxBytes, Dir: dir}
}

// Globs (** included) fetch every matching regular file with its
// SHA-256, in one remote command; the files are 0600 in 0700 dirs and
// equal the remote ones; dot files only when named; profile noise before
// the answer is skipped.
func TestFetchGlobs(t *testing.T) {
	needTools(t)
	wd := t.TempDir()
	big := randBytes(t, 700<<10)
	writeFile(t, filepath.Join(wd, "out", "a.bin"), big)
	writeFile(t, filepath.Join(wd, "cov", "x.txt"), []byte("x\n"))
	writeFile(t, filepath.Join(wd, "cov", "deep", "er", "y.txt"), []byte("y\n"))
	writeFile(t, filepath.Join(wd, "cov", ".hidden"), []byte("h\n"))
	writeFile(t, filepath.Join(wd, "other.txt"), []byte("o\n"))
	writeFile(t, filepath.Join(wd, ".crabbox", "env", "run_x.env"), []byte("SECRET=1\n"))
	dir := filepath.Join(t.TempDir(), "artifacts")
	req := request(wd, dir)
	req.Globs = []string{"out/*", "cov/**"}
	rem := &localRemote{prefix: "welcome to the workspace\n\x01noise\n"}
	res, err := Fetch(context.Background(), rem, req)
	if err != nil {
		t.Fatalf("fetch: %v (%+v)", err, res)
	}
	if rem.calls != 1 {
		t.Errorf("%d remote commands, want 1", rem.calls)
	}
	var got []string
	for _, a := range res.Artifacts {
		got = append(got, a.Path)
		data, err := os.ReadFile(filepath.Join(wd, a.Path))
		if err != nil {
			t.Fatal(err)
		}
		if a.SHA256 != sum(data) || a.Size != int64(len(data)) {
			t.Errorf("%s: manifest %+v, remote sha %s size %d", a.Path, a, sum(data), len(data))
		}
		local, err := os.ReadFile(filepath.Join(dir, a.Path))
		if err != nil || !bytes.Equal(local, data) {
			t.Errorf("%s: local copy differs (%v)", a.Path, err)
		}
		fi, _ := os.Stat(filepath.Join(dir, a.Path))
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", a.Path, fi.Mode())
		}
	}
	want := []string{"out/a.bin", "cov/deep/er/y.txt", "cov/x.txt"}
	if !slices.Equal(got, want) {
		t.Errorf("artifacts %q, want %q", got, want)
	}
	for _, d := range []string{dir, filepath.Join(dir, "cov"), filepath.Join(dir, "cov", "deep", "er")} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v", d, fi.Mode(), err)
		}
	}
	if res.Matched != 3 || res.Skipped != 0 || res.Bytes != int64(len(big)+4) {
		t.Errorf("counts %+v", res)
	}

	// A dot file is fetched when a pattern names it.
	req.Globs, req.Dir = []string{"cov/.h*"}, filepath.Join(t.TempDir(), "a2")
	res, err = Fetch(context.Background(), rem, req)
	if err != nil || len(res.Artifacts) != 1 || res.Artifacts[0].Path != "cov/.hidden" {
		t.Errorf("dot file: %v %+v", err, res.Artifacts)
	}
}

// Matches that resolve outside the workdir (a symlink out, a symlinked
// directory out), into .crabbox, dangling links and non-files are never
// sent; each refusal is a note. Names with shell syntax are data.
func TestFetchConfinement(t *testing.T) {
	needTools(t)
	wd := t.TempDir()
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.txt")
	writeFile(t, secret, []byte("top secret\n"))
	writeFile(t, filepath.Join(outside, "d", "f.txt"), []byte("outside dir\n"))
	writeFile(t, filepath.Join(wd, "out", "ok.txt"), []byte("ok\n"))
	writeFile(t, filepath.Join(wd, ".crabbox", "env", "run.env"), []byte("TOKEN=v\n"))
	hostile := []string{"it's $(touch PWNED).txt", "-rf", "a]b[c", "@", "*", "new\nline.txt", "tab\tx"}
	for _, n := range hostile {
		writeFile(t, filepath.Join(wd, "out", n), []byte(n))
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(secret, filepath.Join(wd, "out", "link-out")))
	must(os.Symlink(filepath.Join(outside, "d"), filepath.Join(wd, "out", "dir-out")))
	must(os.Symlink(filepath.Join(wd, ".crabbox", "env", "run.env"), filepath.Join(wd, "out", "meta-link")))
	must(os.Symlink(filepath.Join(wd, "nowhere"), filepath.Join(wd, "out", "dangling")))
	must(os.Symlink("ok.txt", filepath.Join(wd, "out", "inside-link")))
	must(exec.Command("mkfifo", filepath.Join(wd, "out", "fifo")).Run())

	dir := filepath.Join(t.TempDir(), "artifacts")
	req := request(wd, dir)
	req.Globs = []string{"out/**", "out/dir-out/*"}
	res, err := Fetch(context.Background(), &localRemote{}, req)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	got := map[string]bool{}
	for _, a := range res.Artifacts {
		got[a.Path] = true
	}
	for _, n := range append([]string{"ok.txt", "inside-link"}, hostile...) {
		if !got["out/"+n] {
			t.Errorf("out/%q not fetched (positive control)", n)
		}
	}
	for _, n := range []string{"out/link-out", "out/dir-out/f.txt", "out/meta-link", "out/dangling", "out/fifo"} {
		if got[n] {
			t.Errorf("%s was fetched", n)
		}
	}
	if hit := grep(t, filepath.Dir(dir), "top secret"); hit != "" {
		t.Errorf("the outside file reached %s", hit)
	}
	if hit := grep(t, filepath.Dir(dir), "TOKEN=v"); hit != "" {
		t.Errorf("the .crabbox env file reached %s", hit)
	}
	kinds := map[string]string{}
	for _, n := range res.Notes {
		kinds[n.Path] = n.Kind
	}
	for p, k := range map[string]string{"out/link-out": "outside", "out/dir-out/f.txt": "outside", "out/meta-link": "meta", "out/dangling": "dangling", "out/fifo": "notfile"} {
		if kinds[p] != k {
			t.Errorf("note for %s: %q, want %q (notes %+v)", p, kinds[p], k, res.Notes)
		}
	}
	if _, err := os.Stat(filepath.Join(wd, "out", "PWNED")); err == nil {
		t.Error("a file name ran as a command")
	}
	if _, err := os.Stat("PWNED"); err == nil {
		t.Error("a file name ran as a command")
	}
}

// The bounds: files past artifacts.maxFiles or artifacts.maxBytes are
// counted, not sent.
func TestFetchBounds(t *testing.T) {
	needTools(t)
	wd := t.TempDir()
	for _, n := range []string{"a", "b", "c", "d"} {
		writeFile(t, filepath.Join(wd, "o", n), bytes.Repeat([]byte(n), 100))
	}
	req := request(wd, filepath.Join(t.TempDir(), "a"))
	req.Globs, req.MaxFiles = []string{"o/*"}, 2
	res, err := Fetch(context.Background(), &localRemote{}, req)
	if err != nil || len(res.Artifacts) != 2 || res.Matched != 4 || res.Skipped != 2 || res.SkippedBytes != 200 {
		t.Fatalf("maxFiles: %v %+v", err, res)
	}
	req.Dir, req.MaxFiles, req.MaxBytes = filepath.Join(t.TempDir(), "b"), 10, 250
	res, err = Fetch(context.Background(), &localRemote{}, req)
	if err != nil || len(res.Artifacts) != 2 || res.Skipped != 2 || res.Bytes != 200 {
		t.Fatalf("maxBytes: %v %+v", err, res)
	}
}

// Require patterns report their matches; downloads are written (0600,
// atomically) only when every required pattern matched; a missing or
// outside download says why.
func TestFetchRequireAndDownloads(t *testing.T) {
	needTools(t)
	wd := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	writeFile(t, outside, []byte("secret"))
	writeFile(t, filepath.Join(wd, "proof.json"), []byte(`{"ok":true}`))
	writeFile(t, filepath.Join(wd, "bin", "tool"), []byte("binary"))
	if err := os.Symlink(outside, filepath.Join(wd, "bin", "out")); err != nil {
		t.Fatal(err)
	}
	local := t.TempDir()
	req := request(wd, filepath.Join(t.TempDir(), "a"))
	req.Require = []string{"proof.json", "*.json"}
	req.Downloads = []Download{
		{Remote: "bin/tool", Local: filepath.Join(local, "new", "tool")},
		{Remote: "bin/missing", Local: filepath.Join(local, "m")},
		{Remote: "bin/out", Local: filepath.Join(local, "o")},
		{Remote: "proof.json", Local: filepath.Join(local, "proof.json")},
	}
	res, err := Fetch(context.Background(), &localRemote{}, req)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.RequireCounts, []int{1, 1}) || len(res.MissingRequired(req.Require)) != 0 {
		t.Errorf("require counts %v", res.RequireCounts)
	}
	if len(res.Artifacts) != 1 || res.Artifacts[0].Path != "proof.json" {
		t.Errorf("required files are collected too: %+v", res.Artifacts)
	}
	byRemote := map[string]DownloadResult{}
	for _, d := range res.Downloads {
		byRemote[d.Remote] = d
	}
	if d := byRemote["bin/tool"]; d.Err != "" || d.SHA256 != sum([]byte("binary")) {
		t.Errorf("bin/tool: %+v", d)
	}
	if b, err := os.ReadFile(filepath.Join(local, "new", "tool")); err != nil || string(b) != "binary" {
		t.Errorf("downloaded tool: %q %v", b, err)
	}
	if fi, _ := os.Stat(filepath.Join(local, "new", "tool")); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	if b, _ := os.ReadFile(filepath.Join(local, "proof.json")); string(b) != `{"ok":true}` {
		t.Errorf("a file both collected and downloaded: %q", b)
	}
	if d := byRemote["bin/missing"]; !strings.Contains(d.Err, "does not exist") {
		t.Errorf("missing: %+v", d)
	}
	if d := byRemote["bin/out"]; !strings.Contains(d.Err, "outside the workdir") {
		t.Errorf("outside: %+v", d)
	}
	if _, err := os.Stat(filepath.Join(local, "o")); err == nil {
		t.Error("the outside download was written")
	}
	entries, _ := os.ReadDir(local)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temp file left: %s", e.Name())
		}
	}

	// A required pattern without a match: no download at all.
	local2 := t.TempDir()
	req.Require = []string{"proof.json", "missing.txt"}
	req.Dir = filepath.Join(t.TempDir(), "b")
	req.Downloads = []Download{{Remote: "bin/tool", Local: filepath.Join(local2, "tool")}}
	res, err = Fetch(context.Background(), &localRemote{}, req)
	if err != nil {
		t.Fatal(err)
	}
	if m := res.MissingRequired(req.Require); !slices.Equal(m, []string{"missing.txt"}) {
		t.Errorf("missing required %q", m)
	}
	if len(res.Downloads) != 0 {
		t.Errorf("downloads despite a missing requirement: %+v", res.Downloads)
	}
	if _, err := os.Stat(filepath.Join(local2, "tool")); err == nil {
		t.Error("downloaded despite a missing requirement")
	}
}

// The same file under two names (a symlink inside, a hard link) is sent
// once and kept under both.
func TestFetchLinks(t *testing.T) {
	needTools(t)
	wd := t.TempDir()
	data := randBytes(t, 4096)
	writeFile(t, filepath.Join(wd, "a", "real.bin"), data)
	if err := os.Link(filepath.Join(wd, "a", "real.bin"), filepath.Join(wd, "b", "hard.bin")); err != nil {
		if err := os.MkdirAll(filepath.Join(wd, "b"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(filepath.Join(wd, "a", "real.bin"), filepath.Join(wd, "b", "hard.bin")); err != nil {
			t.Skipf("no hard links: %v", err)
		}
	}
	if err := os.Symlink("../a/real.bin", filepath.Join(wd, "b", "soft.bin")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "a")
	req := request(wd, dir)
	req.Globs = []string{"**/*.bin"}
	res, err := Fetch(context.Background(), &localRemote{}, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Artifacts) != 3 {
		t.Fatalf("artifacts %+v notes %+v", res.Artifacts, res.Notes)
	}
	for _, a := range res.Artifacts {
		b, err := os.ReadFile(filepath.Join(dir, a.Path))
		if err != nil || !bytes.Equal(b, data) || a.SHA256 != sum(data) {
			t.Errorf("%s differs: %v", a.Path, err)
		}
	}
}

// scripted answers with a fixed stream, whatever the command.
type scripted struct{ stream func(marker string) []byte }

func (s scripted) Run(ctx context.Context, remote string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	i := strings.Index(remote, "CRABBOX-ARTIFACTS-1-")
	marker := remote[i : i+len("CRABBOX-ARTIFACTS-1-")+16]
	_, err := stdout.Write(s.stream(marker))
	return 0, err
}

func tarOf(t *testing.T, entries ...*tar.Header) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range entries {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte("z"), int(h.Size)))
		}
	}
	tw.Close()
	return b.Bytes()
}

func rec(fields ...string) string { return strings.Join(fields, "\x00") + "\x00" }

// A hostile workspace cannot write outside the artifacts dir, exceed the
// bounds or plant links: every such stream is refused (exit 7) and
// nothing lands outside the dir.
func TestFetchHostileStreams(t *testing.T) {
	reg := func(name string, n int64) *tar.Header {
		return &tar.Header{Name: name, Size: n, Mode: 0o644, Typeflag: tar.TypeReg}
	}
	cases := []struct {
		name   string
		stream func(m string) string
		want   string
		notes  string
	}{
		{"dotdot name", func(m string) string { return rec(m, "A", "../evil", "x", "1", "Z") }, "unsafe artifact name", ""},
		{"absolute name", func(m string) string { return rec(m, "A", "/tmp/evil", "x", "1", "Z") }, "unsafe artifact name", ""},
		{"meta name", func(m string) string { return rec(m, "A", ".crabbox/x", "x", "1", "Z") }, "unsafe artifact name", ""},
		{"too many files", func(m string) string { return rec(m, "A", "a", "a", "1", "A", "b", "b", "1", "A", "c", "c", "1", "Z") }, "more than 2 artifacts", ""},
		{"too many bytes", func(m string) string { return rec(m, "A", "a", "a", "600", "A", "b", "b", "600", "Z") }, "more than 1000 bytes", ""},
		{"duplicate", func(m string) string { return rec(m, "A", "a", "a", "1", "A", "a", "b", "1", "Z") }, "twice", ""},
		{"unannounced entry", func(m string) string {
			return rec(m, "A", "a", "a", "1", "T") + string(tarOf(t, reg("./zzz", 1)))
		}, "never announced", ""},
		{"no marker", func(m string) string { return "just noise" }, "no answer", ""},
		{"cut short", func(m string) string { return rec(m, "A", "a", "a", "1") }, "ended early", ""},
		{"bad download index", func(m string) string { return rec(m, "D", "7", "x", "1", "Z") }, "bad download index", ""},
		{"unknown record", func(m string) string { return rec(m, "?") }, "unexpected record", ""},
		{"symlink entry", func(m string) string {
			return rec(m, "A", "a", "a", "4", "T") + string(tarOf(t, &tar.Header{Name: "./a", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}))
		}, "", "notfile"},
		{"cut mid-file", func(m string) string {
			full := tarOf(t, reg("./a", 400))
			return rec(m, "A", "a", "a", "400", "T") + string(full[:512+100])
		}, "receiving a", ""},
		{"changed size", func(m string) string {
			return rec(m, "A", "a", "a", "4", "T") + string(tarOf(t, reg("./a", 9)))
		}, "", "changed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "artifacts")
			req := Request{Workdir: "/w", MaxFiles: 2, MaxBytes: 1000, Dir: dir}
			res, err := Fetch(context.Background(), scripted{func(m string) []byte { return []byte(tc.stream(m)) }}, req)
			if tc.want != "" {
				if err == nil || exitcode.Code(err) != exitcode.Transport || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err %v (exit %d), want %q", err, exitcode.Code(err), tc.want)
				}
			} else if err != nil {
				t.Fatalf("err %v", err)
			}
			if tc.notes != "" && (len(res.Notes) == 0 || res.Notes[0].Kind != tc.notes) {
				t.Errorf("notes %+v, want %s", res.Notes, tc.notes)
			}
			if len(res.Artifacts) != 0 {
				t.Errorf("artifacts kept: %+v", res.Artifacts)
			}
			filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					t.Errorf("left %s behind", p)
				}
				return nil
			})
			entries, _ := os.ReadDir(base)
			for _, e := range entries {
				if e.Name() != "artifacts" {
					t.Errorf("wrote %s outside the artifacts dir", e.Name())
				}
			}
		})
	}
}

// A positive control for the hostile cases: a well-formed stream by hand
// is accepted.
func TestFetchHandStream(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "artifacts")
	req := Request{Workdir: "/w", MaxFiles: 2, MaxBytes: 1000, Dir: dir}
	stream := func(m string) []byte {
		return append([]byte(rec(m, "L", "1", "1", "0", "0", "A", "x/a", "real/a", "3", "T")),
			tarOf(t, &tar.Header{Name: "./real/a", Size: 3, Mode: 0o644, Typeflag: tar.TypeReg})...)
	}
	res, err := Fetch(context.Background(), scripted{stream}, req)
	if err != nil || len(res.Artifacts) != 1 || res.Artifacts[0] != (runs.Artifact{Path: "x/a", Size: 3, SHA256: sum([]byte("zzz"))}) {
		t.Fatalf("%v %+v", err, res)
	}
}

func grep(t *testing.T, dir, s string) string {
	t.Helper()
	hit := ""
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(s)) {
				hit = p
			}
		}
		return nil
	})
	return hit
}
