package syncer

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/execx"
)

var (
	benchOnce sync.Once
	benchDir  string
	benchErr  error
)

// benchRepo builds, once per test binary, a committed 20,000-file repo
// (200 dirs x 100 files) plus 20 modified and 20 untracked files.
func benchRepo(b *testing.B) string {
	benchOnce.Do(func() {
		dir, err := os.MkdirTemp("", "crabbox-syncer-bench-")
		if err != nil {
			benchErr = err
			return
		}
		benchDir = dir
		for d := range 200 {
			sub := filepath.Join(dir, fmt.Sprintf("pkg%03d", d))
			if err := os.MkdirAll(sub, 0o755); err != nil {
				benchErr = err
				return
			}
			for f := range 100 {
				content := fmt.Sprintf("package pkg%03d\n\n// file %d\nvar X%d = %d\n", d, f, f, d*f)
				if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("file%03d.go", f)), []byte(content), 0o644); err != nil {
					benchErr = err
					return
				}
			}
		}
		run := func(args ...string) {
			if benchErr != nil {
				return
			}
			cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
			if out, err := cmd.CombinedOutput(); err != nil {
				benchErr = fmt.Errorf("git %v: %v\n%s", args, err, out)
			}
		}
		run("init", "-q")
		run("add", "-A")
		run("-c", "user.email=b@b", "-c", "user.name=b", "commit", "-q", "-m", "bench")
		for i := range 20 {
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("pkg%03d/file000.go", i)), []byte(fmt.Sprintf("modified %d\n", i)), 0o644)
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("untracked%02d.txt", i)), []byte("u\n"), 0o644)
		}
		run("status", "--porcelain") // refreshes the index, like a user's `git status`
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchDir
}

func cleanupBench() {
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
}

// BenchmarkFingerprint20k: the local cost of deciding "no change" on a
// 20,000-file repo.
func BenchmarkFingerprint20k(b *testing.B) {
	dir := benchRepo(b)
	ctx := context.Background()
	o := DefaultOptions()
	o.RepoRoot, o.Workdir = dir, "/w/l/r"
	m, err := BuildManifest(ctx, execx.OS{}, o)
	if err != nil {
		b.Fatal(err)
	}
	if len(m.Files) != 20020 {
		b.Fatalf("manifest has %d files", len(m.Files))
	}
	b.Run("manifest+fingerprint", func(b *testing.B) {
		for b.Loop() {
			m, err := BuildManifest(ctx, execx.OS{}, o)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := Fingerprint(ctx, execx.OS{}, o, m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fingerprint", func(b *testing.B) {
		for b.Loop() {
			if _, err := Fingerprint(ctx, execx.OS{}, o, m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fingerprint-own-git", func(b *testing.B) {
		bare := &Manifest{Files: m.Files, Bytes: m.Bytes}
		for b.Loop() {
			if _, err := Fingerprint(ctx, execx.OS{}, o, bare); err != nil {
				b.Fatal(err)
			}
		}
	})
}
