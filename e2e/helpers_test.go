//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/coder"
)

// world is one isolated crabbox user: HOME/XDG dirs, a scratch git repo,
// and the lab's Coder login.
type world struct {
	t    *testing.T
	env  []string
	repo string
	home string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, env: labEnv(t)}
	for _, e := range w.env {
		if v, ok := strings.CutPrefix(e, "HOME="); ok {
			w.home = v
		}
	}
	w.repo = filepath.Join(t.TempDir(), "demo-repo")
	if err := os.MkdirAll(w.repo, 0o755); err != nil {
		t.Fatal(err)
	}
	w.git("init", "-q", "-b", "main")
	w.write("README.md", "hello from crabbox e2e\n")
	w.git("add", "-A")
	w.git("-c", "user.email=e2e@example.com", "-c", "user.name=e2e", "commit", "-qm", "init")
	// Repo config: provider and template, as a user would set them.
	w.write("crabbox.yaml", "provider: coder\ncoder:\n  template: "+lab.Template+"\n  workRoot: "+filepath.Join(w.home, "remote-work")+"\n")
	return w
}

func (w *world) write(rel, content string) {
	w.t.Helper()
	p := filepath.Join(w.repo, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) git(args ...string) {
	w.t.Helper()
	if out, err := runCmd(cmdTimeout, w.repo, w.env, "git", args...); err != nil {
		w.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

type result struct {
	stdout, stderr string
	code           int
}

// crabbox runs the built binary in the scratch repo.
func (w *world) crabbox(args ...string) result {
	w.t.Helper()
	return w.crabboxEnv(nil, args...)
}

func (w *world) crabboxEnv(extra []string, args ...string) result {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, lab.Crabbox, args...)
	cmd.Dir = w.repo
	cmd.Env = append(append([]string(nil), w.env...), extra...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		w.t.Fatalf("crabbox %v: %v", args, err)
	}
	if ctx.Err() != nil {
		w.t.Fatalf("crabbox %v timed out after %s\nstderr:\n%s", args, cmdTimeout, r.stderr)
	}
	w.t.Logf("$ crabbox %s -> exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// must runs crabbox and fails the test unless it exits 0.
func (w *world) must(args ...string) result {
	w.t.Helper()
	r := w.crabbox(args...)
	if r.code != 0 {
		w.t.Fatalf("crabbox %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// coderList is Coder's own view of the workspaces (ground truth).
func (w *world) coderList() []coder.Workspace {
	w.t.Helper()
	out, err := runCmd(cmdTimeout, w.repo, w.env, lab.Coder, "list", "-o", "json")
	if err != nil {
		w.t.Fatalf("coder list: %v\n%s", err, out)
	}
	rows, err := coder.ParseList(out)
	if err != nil {
		w.t.Fatalf("parse coder list: %v", err)
	}
	return rows
}

func (w *world) coderRow(name string) *coder.Workspace {
	for _, r := range w.coderList() {
		if r.Name == name {
			return &r
		}
	}
	return nil
}

// deleteWorkspace removes a workspace with the coder CLI (test cleanup).
func (w *world) deleteWorkspace(name string) {
	if w.coderRow(name) == nil {
		return
	}
	if out, err := runCmd(cmdTimeout, w.repo, w.env, lab.Coder, "delete", "--yes", "admin/"+name); err != nil {
		w.t.Logf("cleanup: coder delete %s: %v\n%s", name, err, out)
	}
}

var (
	leasedRe    = regexp.MustCompile(`(?m)^leased (cbx_[0-9a-f]{12}) slug=(\S+) provider=coder server=(\S+)`)
	workspaceRe = regexp.MustCompile(`(?m)^provisioning provider=coder lease=(cbx_[0-9a-f]{12}) slug=\S+ workspace=(\S+) template=\S+ keep=(true|false)`)
)

type warmed struct{ id, slug, ref, workspace string }

// warmup runs crabbox warmup and registers a cleanup that deletes the
// workspace whatever happens.
func (w *world) warmup(args ...string) warmed {
	w.t.Helper()
	r := w.crabbox(append([]string{"warmup"}, args...)...)
	pm := workspaceRe.FindStringSubmatch(r.stderr)
	if pm != nil {
		w.t.Cleanup(func() { w.deleteWorkspace(pm[2]) })
	}
	if r.code != 0 {
		w.t.Fatalf("warmup: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	lm := leasedRe.FindStringSubmatch(r.stdout)
	if lm == nil || pm == nil {
		w.t.Fatalf("warmup output lacks leased/provisioning lines:\n%s\n%s", r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "\nready ssh=") || !strings.Contains(r.stdout, "warmup complete total=") {
		w.t.Fatalf("warmup output lacks ready/complete lines:\n%s", r.stdout)
	}
	if lm[1] != pm[1] {
		w.t.Fatalf("lease differs between provisioning (%s) and leased (%s)", pm[1], lm[1])
	}
	return warmed{id: lm[1], slug: lm[2], ref: lm[3], workspace: pm[2]}
}

// view decodes a --json lease view.
func decodeJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, s)
	}
	return v
}

type jsonLease struct {
	ID            string            `json:"id"`
	Slug          string            `json:"slug"`
	Provider      string            `json:"provider"`
	State         string            `json:"state"`
	Ready         bool              `json:"ready"`
	Host          string            `json:"host"`
	ServerType    string            `json:"serverType"`
	Keep          bool              `json:"keep"`
	LastTouchedAt string            `json:"lastTouchedAt"`
	ExpiresAt     string            `json:"expiresAt"`
	Workspace     string            `json:"workspace"`
	Labels        map[string]string `json:"labels"`
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func itoa(n int) string { return strconv.Itoa(n) }

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// procCmdlinesContaining counts live processes whose command line contains s.
func procCmdlinesContaining(s string) int {
	self := strconv.Itoa(os.Getpid())
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		if e.Name() == self || e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) {
			n++
		}
	}
	return n
}

// grepDir returns the first file under dir whose content contains s.
func grepDir(t *testing.T, dir, s string) string {
	t.Helper()
	hit := ""
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || hit != "" {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(s)) {
			hit = p
		}
		return nil
	})
	return hit
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
