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
	"syscall"
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
	// Repo config: provider and template, as a user would set them. The
	// work root chooses where the workspace writes, so a repo file may only
	// set it once trusted: it lives in the user's own config.
	w.write("crabbox.yaml", "provider: coder\ncoder:\n  template: "+lab.Template+"\n")
	userCfg := filepath.Join(w.home, ".config", "crabbox", "config.yaml")
	if err := os.MkdirAll(filepath.Dir(userCfg), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(userCfg, []byte("coder:\n  workRoot: "+filepath.Join(w.home, "remote-work")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
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
	w.t.Logf("$ crabbox %s -> exit %d\n%s%s", shortArgs(args), r.code, r.stdout, r.stderr)
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

// proc is a crabbox process started in the background (kills, concurrency).
type proc struct {
	t       *testing.T
	args    []string
	cmd     *exec.Cmd
	out     *syncBuffer
	errb    *syncBuffer
	done    chan struct{}
	err     error
	cancel  context.CancelFunc
	started time.Time
}

// start runs crabbox in the scratch repo (or dir, when not empty) without
// waiting for it.
func (w *world) start(dir string, extra []string, args ...string) *proc {
	w.t.Helper()
	return w.startProg([]string{lab.Crabbox}, dir, extra, args...)
}

// startProg starts prog (argv, crabbox itself or a wrapper that execs it)
// with args appended, in dir (the scratch repo when empty).
func (w *world) startProg(prog []string, dir string, extra []string, args ...string) *proc {
	w.t.Helper()
	if dir == "" {
		dir = w.repo
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	cmd := exec.CommandContext(ctx, prog[0], append(append([]string(nil), prog[1:]...), args...)...)
	cmd.Dir = dir
	cmd.Env = append(append([]string(nil), w.env...), extra...)
	cmd.WaitDelay = 5 * time.Second
	p := &proc{t: w.t, args: args, cmd: cmd, out: &syncBuffer{}, errb: &syncBuffer{}, done: make(chan struct{}), cancel: cancel, started: time.Now()}
	cmd.Stdout, cmd.Stderr = p.out, p.errb
	if err := cmd.Start(); err != nil {
		cancel()
		w.t.Fatalf("starting %v %v: %v", prog, args, err)
	}
	go func() {
		p.err = cmd.Wait()
		cancel()
		close(p.done)
	}()
	w.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the process (bounded) and returns its result.
func (p *proc) wait(timeout time.Duration) result {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("crabbox %v still running after %s\nstderr:\n%s", p.args, timeout, p.errb.String())
	}
	r := result{stdout: p.out.String(), stderr: p.errb.String()}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
	case errors.As(p.err, &ee):
		r.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.code = 128 + int(ws.Signal())
		}
	default:
		p.t.Fatalf("crabbox %v: %v", p.args, p.err)
	}
	p.t.Logf("$ crabbox %s -> exit %d (%s)\n%s%s", strings.Join(p.args, " "), r.code, time.Since(p.started).Round(time.Millisecond), r.stdout, r.stderr)
	return r
}

// kill sends SIGKILL to crabbox itself (not to its children, which live
// in their own process groups, as they would after a real `kill -9`).
func (p *proc) kill() result {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGKILL)
	return p.wait(30 * time.Second)
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitUntil polls cond every 50 ms until it holds, failing the test after
// timeout (or when the process ends first).
func waitUntil(t *testing.T, timeout time.Duration, what string, p *proc, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if p != nil && p.exited() {
			t.Fatalf("crabbox %v ended before %s\nstdout:\n%s\nstderr:\n%s", p.args, what, p.out.String(), p.errb.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// claimsJSON is `crabbox claims list --json` (it must exit 0: no corrupted
// claim file).
type claimsOut struct {
	Claims []struct {
		LeaseID  string `json:"leaseId"`
		Slug     string `json:"slug"`
		RepoRoot string `json:"repoRoot"`
	} `json:"claims"`
	Problems []struct{ File, Code, Message string } `json:"problems"`
}

func (w *world) claims() claimsOut {
	w.t.Helper()
	r := w.crabbox("claims", "list", "--json")
	if r.code != 0 {
		w.t.Fatalf("claims list: exit %d (corrupted claim?)\n%s%s", r.code, r.stdout, r.stderr)
	}
	return decodeJSON[claimsOut](w.t, r.stdout)
}

// hasClaim reports whether a claim for leaseID exists.
func (w *world) hasClaim(leaseID string) bool {
	for _, c := range w.claims().Claims {
		if c.LeaseID == leaseID {
			return true
		}
	}
	return false
}

// claimPath is the claim file of a lease.
func (w *world) claimPath(leaseID string) string {
	return filepath.Join(w.home, ".local", "state", "crabbox", "claims", leaseID+".json")
}

// expireClaim makes a claim expired and not kept, so cleanup acts on it.
func (w *world) expireClaim(leaseID string) {
	w.t.Helper()
	data, err := os.ReadFile(w.claimPath(leaseID))
	if err != nil {
		w.t.Fatal(err)
	}
	var claim map[string]any
	if err := json.Unmarshal(data, &claim); err != nil {
		w.t.Fatal(err)
	}
	claim["lastUsedAt"] = time.Now().Add(-48 * time.Hour).UTC().Format(time.RFC3339)
	claim["labels"].(map[string]any)["keep"] = "false"
	data, _ = json.MarshalIndent(claim, "", "  ")
	if err := os.WriteFile(w.claimPath(leaseID), append(data, '\n'), 0o600); err != nil {
		w.t.Fatal(err)
	}
}

// assertReleased checks what a release promises for a workspace crabbox
// was asked to release: no claim left and Coder does not show it running.
func (w *world) assertReleased(leaseID, workspace string) {
	w.t.Helper()
	if w.hasClaim(leaseID) {
		w.t.Errorf("claim %s still present after release", leaseID)
	}
	if row := w.coderRow(workspace); row != nil && row.Status != "stopped" {
		w.t.Errorf("workspace %s is %s after release, want stopped or gone", workspace, row.Status)
	}
}

type histRec struct {
	ID       string `json:"id"`
	LeaseID  string `json:"leaseId"`
	State    string `json:"state"`
	ExitCode *int   `json:"exitCode"`
}

func (w *world) history(args ...string) []histRec {
	w.t.Helper()
	return decodeJSON[[]histRec](w.t, w.must(append([]string{"history", "--json"}, args...)...).stdout)
}

// shortArgs joins args for a log line, cut at 400 bytes.
func shortArgs(args []string) string {
	s := strings.Join(args, " ")
	if len(s) > 400 {
		s = s[:400] + "… (" + strconv.Itoa(len(s)) + " bytes)"
	}
	return s
}
