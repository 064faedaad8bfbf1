package artifacts

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzFetchStream: whatever the workspace answers, Fetch never panics and
// never writes outside its artifacts dir (downloads go only to their
// local paths).
func FuzzFetchStream(f *testing.F) {
	f.Add([]byte(rec("L", "1", "1", "0", "0", "A", "x/a", "real/a", "3", "T")))
	f.Add([]byte(rec("A", "../a", "a", "1", "Z")))
	f.Add([]byte(rec("M", "0", "1", "D", "0", "a", "1", "T")))
	f.Add([]byte(rec("N", "outside", "x", "/etc", "X", "0", "missing", "", "Z")))
	f.Add([]byte(rec("A", "a", "a", "3", "T") + "garbage"))
	f.Fuzz(func(t *testing.T, body []byte) {
		base := t.TempDir()
		dir := filepath.Join(base, "artifacts")
		local := filepath.Join(base, "dl", "file")
		req := Request{Workdir: "/w", Require: []string{"r"}, MaxFiles: 4, MaxBytes: 4096, Dir: dir,
			Downloads: []Download{{Remote: "a", Local: local}}}
		stream := func(m string) []byte {
			out := append([]byte(m+"\x00"), body...)
			if strings.HasSuffix(string(body), "T\x00") {
				out = append(out, tarOf(t, &tar.Header{Name: "./real/a", Size: 3, Mode: 0o644, Typeflag: tar.TypeReg})...)
			}
			return out
		}
		_, _ = Fetch(context.Background(), scripted{stream}, req)
		entries, _ := os.ReadDir(base)
		for _, e := range entries {
			if e.Name() != "artifacts" && e.Name() != "dl" {
				t.Fatalf("wrote %s outside the artifacts dir", e.Name())
			}
		}
		filepath.WalkDir(filepath.Join(base, "dl"), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && p != local {
				t.Fatalf("download wrote %s", p)
			}
			return nil
		})
	})
}
