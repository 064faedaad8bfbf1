package artifacts

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/crabbox-dev/crabbox/internal/runs"
)

// Extract copies the artifacts of a manifest from src (a run's artifacts
// dir) to dest, at their paths below it: dest and its new directories are
// made 0700, files are written 0600 through a temp file and renamed, and
// never through a symlink out of dest (os.Root). Each copy is checked
// against the manifest's size and SHA-256; a file that no longer matches
// is not written and Extract fails naming it. It returns the number of
// files written.
func Extract(src string, manifest []runs.Artifact, dest string) (int, error) {
	if len(manifest) == 0 {
		return 0, nil
	}
	sroot, err := os.OpenRoot(src)
	if err != nil {
		return 0, fmt.Errorf("artifacts of the run: %w", err)
	}
	defer sroot.Close()
	if err := os.MkdirAll(dest, 0o700); err != nil {
		return 0, err
	}
	droot, err := os.OpenRoot(dest)
	if err != nil {
		return 0, err
	}
	defer droot.Close()
	n := 0
	for _, a := range manifest {
		if !validName(a.Path) {
			return n, fmt.Errorf("the manifest names an unsafe path %q", a.Path)
		}
		if err := extractOne(sroot, droot, a); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func extractOne(sroot, droot *os.Root, a runs.Artifact) error {
	in, err := sroot.Open(a.Path)
	if err != nil {
		return fmt.Errorf("artifact %s: %w", runs.Escape(a.Path), err)
	}
	defer in.Close()
	if dir := path.Dir(a.Path); dir != "." {
		if err := droot.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("artifact %s: %w", runs.Escape(a.Path), err)
		}
	}
	tmp := path.Join(path.Dir(a.Path), "."+path.Base(a.Path)+".crabbox-"+nonce())
	out, err := droot.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("artifact %s: %w", runs.Escape(a.Path), err)
	}
	h := sha256.New()
	size, err := io.Copy(io.MultiWriter(out, h), in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && (size != a.Size || hex.EncodeToString(h.Sum(nil)) != a.SHA256) {
		err = fmt.Errorf("its content no longer matches the manifest (size %d, want %d; sha256 %s, want %s)", size, a.Size, hex.EncodeToString(h.Sum(nil)), a.SHA256)
	}
	if err == nil {
		err = droot.Rename(tmp, a.Path)
	}
	if err != nil {
		_ = droot.Remove(tmp)
		return fmt.Errorf("artifact %s: %w", runs.Escape(a.Path), err)
	}
	return nil
}
