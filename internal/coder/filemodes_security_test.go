package coder

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/leaselock"
	"github.com/crabbox-dev/crabbox/internal/runs"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// TestStateFilesArePrivate creates every kind of local state through its
// package API — claims (and their locks), run records and logs, the whoami
// cache, lease locks, known_hosts dirs — with umask 0 (so nothing relies on
// the user's umask), then walks the state and config dirs: no file or
// directory may be accessible by group or others.
func TestStateFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)

	root := t.TempDir()
	state := filepath.Join(root, "state", "crabbox")
	cfg := filepath.Join(root, "config", "crabbox")
	const id = "cbx_0123456789ab"

	steps := []struct {
		name string
		do   func() error
	}{
		{"claim", func() error {
			_, err := claims.New(state).Update(id, func(c *claims.Claim, exists bool) error {
				c.Slug, c.RepoRoot = "blue", "/src/app"
				return nil
			})
			return err
		}},
		{"run record and log", func() error {
			r, err := runs.New(state).Start(runs.Record{LeaseID: id, Command: []string{"true"}})
			if err != nil {
				return err
			}
			if _, err := r.Log().Write([]byte("output\n")); err != nil {
				return err
			}
			return r.Finish(runs.StateSucceeded, 0)
		}},
		{"whoami cache", func() error {
			c := &WhoAmICache{Path: filepath.Join(state, "coder", "whoami.json"), Key: "k", TTL: 1}
			c.Store(WhoAmI{URL: "https://coder.example.com", Username: "alice"})
			return nil
		}},
		{"lease lock", func() error {
			l, err := leaselock.Acquire(context.Background(), state, id, nil)
			if err != nil {
				return err
			}
			l.Release()
			return nil
		}},
		{"known_hosts dir (coder)", func() error {
			return sshx.EnsureKnownHostsDir(lease.Target{Host: "h", KnownHostsFile: KnownHostsFile(cfg, "alice/ws", "ws1")})
		}},
		{"known_hosts dir (other)", func() error {
			return sshx.EnsureKnownHostsDir(lease.Target{Host: "h", KnownHostsFile: filepath.Join(cfg, "other", "known_hosts.d", "f")})
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	kinds := map[string]bool{}
	for _, dir := range []string{state, cfg} {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			kinds[filepath.Base(filepath.Dir(p))] = true
			if fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s is accessible by group or others: %v", rel, fi.Mode().Perm())
			}
			if d.Type().IsRegular() && fi.Mode().Perm() != 0o600 {
				t.Errorf("file %s has mode %v, want 0600", rel, fi.Mode().Perm())
			}
			if d.IsDir() && fi.Mode().Perm() != 0o700 {
				t.Errorf("dir %s has mode %v, want 0700", rel, fi.Mode().Perm())
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"claims", "claim-locks", "runs", "coder", "lease-locks", "known_hosts.d"} {
		if !kinds[want] {
			if _, err := os.Stat(filepath.Join(cfg, "coder", want)); want != "known_hosts.d" || err != nil {
				t.Errorf("nothing was created under a %q dir", want)
			}
		}
	}
}
