package syncer

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/lease"
)

// newRepo makes an empty git repository in a temp dir.
func newRepo(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	gitIn(t, dir, "init", "-q", "-b", "main")
	gitIn(t, dir, "config", "user.email", "test@example.com")
	gitIn(t, dir, "config", "user.name", "test")
	gitIn(t, dir, "config", "commit.gpgsign", "false")
	return dir
}

func gitIn(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func commitAll(t testing.TB, dir string) {
	t.Helper()
	gitIn(t, dir, "add", "-A")
	gitIn(t, dir, "commit", "-q", "-m", "c", "--allow-empty")
}

func write(t testing.TB, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// editKeepingStat rewrites rel with same-length content and puts the old
// mtime back, the edit rsync's quick check and a size+mtime cache miss.
func editKeepingStat(t testing.TB, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(content)) != fi.Size() {
		t.Fatalf("editKeepingStat: %d bytes for a %d-byte file", len(content), fi.Size())
	}
	if err := os.WriteFile(p, []byte(content), fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if fi2, _ := os.Stat(p); fi2.Size() != fi.Size() || !fi2.ModTime().Equal(fi.ModTime()) {
		t.Fatal("editKeepingStat: size or mtime changed")
	}
}

// localRemote is a Remote that is this machine: Run hands the command line
// to bash -c (as sshd hands it to the login shell) and RSH is a script
// that drops rsync's "-l user host" and runs the rest with bash -c.
type localRemote struct {
	rsh  string
	runs atomic.Int32
	// hook, when set, runs before each command; a non-nil error is
	// returned as a transport error.
	hook func(cmd string) error
}

func newLocalRemote(t testing.TB) *localRemote {
	t.Helper()
	rsh := filepath.Join(t.TempDir(), "fake-ssh")
	script := `#!/bin/bash
# Called by rsync as: fake-ssh [-l user] host rsync --server ...
if [ "$1" = -l ]; then shift 2; fi
shift
exec bash -c "$*"
`
	if err := os.WriteFile(rsh, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return &localRemote{rsh: rsh}
}

func (l *localRemote) Run(ctx context.Context, remote string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	l.runs.Add(1)
	if l.hook != nil {
		if err := l.hook(remote); err != nil {
			return 255, err
		}
	}
	cmd := exec.CommandContext(ctx, "bash", "-c", remote)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}

// RSH quotes the script path for rsync's -e splitting.
func (l *localRemote) RSH() string { return "'" + strings.ReplaceAll(l.rsh, "'", "''") + "'" }

func (l *localRemote) Target() lease.Target { return lease.Target{User: "coder", Host: "local-test"} }

// countingRunner wraps a Runner and counts calls per program name.
type countingRunner struct {
	execx.Runner
	mu     sync.Mutex
	counts map[string]int
	// rsync, when set, replaces the rsync program for the next call only.
	fail func(c execx.Cmd) (execx.Result, error)
}

func newCounting() *countingRunner {
	return &countingRunner{Runner: execx.OS{}, counts: map[string]int{}}
}

func (c *countingRunner) Run(ctx context.Context, cmd execx.Cmd) (execx.Result, error) {
	c.mu.Lock()
	c.counts[filepath.Base(cmd.Name)]++
	fail := c.fail
	c.mu.Unlock()
	if fail != nil && filepath.Base(cmd.Name) == "rsync" {
		return fail(cmd)
	}
	return c.Runner.Run(ctx, cmd)
}

func (c *countingRunner) count(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[name]
}

// events collects reported events.
type events struct {
	mu  sync.Mutex
	evs []Event
}

func (e *events) report(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
}

func (e *events) messages() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.evs {
		out = append(out, ev.Kind+": "+ev.Message)
	}
	return out
}

func (e *events) find(kind, prefix string) (Event, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.evs {
		if ev.Kind == kind && strings.HasPrefix(ev.Message, prefix) {
			return ev, true
		}
	}
	return Event{}, false
}

// remoteTree lists the regular files and symlinks under dir (slash paths),
// leaving out crabbox's own .crabbox/sync metadata.
func remoteTree(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == ".crabbox/sync" && fi.IsDir() {
			return filepath.SkipDir
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "-> " + target
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			out[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func testOptions(repo, workdir string) Options {
	o := DefaultOptions()
	o.RepoRoot, o.Workdir = repo, workdir
	o.Timeout = 2 * time.Minute
	return o
}
