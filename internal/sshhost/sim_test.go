package sshhost

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/provider"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// sim is an execx.Runner standing in for ssh in unit tests. It records
// every call (as execx.Fake does). A control-master start succeeds unless
// the destination's host is down; `ssh -O exit` succeeds; a remote command
// (`ssh ... <dest> -- <script>`) runs the script locally with sh, so the
// real owner and release scripts act on the host's work root, a temp dir.
type sim struct {
	mu    sync.Mutex
	calls []execx.Call
	down  map[string]string // host -> ssh's stderr when it cannot connect
}

func newSim() *sim { return &sim{down: map[string]string{}} }

func (s *sim) setDown(host, diag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if diag == "" {
		delete(s.down, host)
		return
	}
	s.down[host] = diag
}

func (s *sim) Calls() []execx.Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]execx.Call(nil), s.calls...)
}

// scripts are the remote scripts run so far.
func (s *sim) scripts() []string {
	var out []string
	for _, c := range s.Calls() {
		if i := indexOf(c.Args, "--"); i >= 0 && i+1 < len(c.Args) {
			out = append(out, c.Args[i+1])
		}
	}
	return out
}

func indexOf(args []string, w string) int {
	for i, a := range args {
		if a == w {
			return i
		}
	}
	return -1
}

func hostOf(dest string) string {
	if i := strings.LastIndex(dest, "@"); i >= 0 {
		return dest[i+1:]
	}
	return dest
}

func (s *sim) Run(ctx context.Context, c execx.Cmd) (execx.Result, error) {
	s.mu.Lock()
	s.calls = append(s.calls, execx.Call{Name: c.Name, Args: append([]string(nil), c.Args...), Env: c.Env})
	down := map[string]string{}
	for k, v := range s.down {
		down[k] = v
	}
	s.mu.Unlock()
	if c.Name != "ssh" {
		return execx.Result{ExitCode: 127}, errors.New("sim: unexpected program " + c.Name)
	}
	fail := func(host string) (execx.Result, error, bool) {
		diag, ok := down[host]
		if !ok {
			return execx.Result{}, nil, false
		}
		if c.Stderr != nil {
			_, _ = c.Stderr.Write([]byte(diag))
		}
		return execx.Result{ExitCode: 255}, &execx.ExitError{Cmd: "ssh", Code: 255, Output: diag}, true
	}
	switch {
	case indexOf(c.Args, "-O") >= 0:
		return execx.Result{}, nil
	case len(c.Args) > 1 && c.Args[0] == "-f" && c.Args[1] == "-N":
		if r, err, failed := fail(hostOf(c.Args[len(c.Args)-1])); failed {
			return r, err
		}
		return execx.Result{}, nil
	}
	i := indexOf(c.Args, "--")
	if i < 1 || i+1 >= len(c.Args) {
		return execx.Result{ExitCode: 127}, errors.New("sim: no remote command in " + strings.Join(c.Args, " "))
	}
	if r, err, failed := fail(hostOf(c.Args[i-1])); failed {
		return r, err
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", c.Args[i+1])
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, c.Stdout, c.Stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return execx.Result{ExitCode: ee.ExitCode()}, &execx.ExitError{Cmd: "ssh", Code: ee.ExitCode()}
	}
	return execx.Result{}, err
}

// world is a set of simulated hosts (work roots in one temp dir) and the
// machines (state dirs) that claim them.
type world struct {
	t     *testing.T
	sim   *sim
	hosts []Host
	root  string
	now   time.Time
	cfg   string // config dir shared by the machines (known_hosts)
}

func newWorld(t *testing.T, n int) *world {
	t.Helper()
	w := &world{t: t, sim: newSim(), root: t.TempDir(), now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), cfg: t.TempDir()}
	for i := 1; i <= n; i++ {
		name := "h" + string(rune('0'+i))
		w.hosts = append(w.hosts, Host{Name: name, Host: name + ".test", User: "ci", Port: 2200 + i,
			IdentityFile: "/keys/id_" + name, WorkRoot: filepath.Join(w.root, name)})
	}
	return w
}

// machine is one state dir using the world's hosts.
type machine struct {
	*Provider
	dir    string
	mu     sync.Mutex
	events []provider.Event
	pool   *sshx.Pool
}

func (w *world) machine(mutate ...func(*Settings)) *machine {
	w.t.Helper()
	m := &machine{dir: w.t.TempDir()}
	settings := Settings{Hosts: append([]Host(nil), w.hosts...), IdleTimeout: 30 * time.Minute, TTL: 90 * time.Minute}
	for _, f := range mutate {
		f(&settings)
	}
	m.pool = sshx.NewPool(w.sim, sshx.SessionOptions{TempDir: w.t.TempDir()})
	w.t.Cleanup(func() { m.pool.Close() })
	m.Provider = &Provider{
		Settings: settings, Claims: claims.New(m.dir), StateDir: m.dir, ConfigDir: w.cfg,
		Runner: w.sim, Tunnels: m.pool,
		Now: func() time.Time { return w.now },
		Events: func(e provider.Event) {
			m.mu.Lock()
			m.events = append(m.events, e)
			m.mu.Unlock()
		},
	}
	return m
}

func (m *machine) warnings() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, e := range m.events {
		if e.Kind == provider.EventWarning {
			out = append(out, e.Message)
		}
	}
	return out
}

func (m *machine) id(t *testing.T) string {
	t.Helper()
	id, err := claims.MachineID(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func ownerRecord(t *testing.T, h Host) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.WorkRoot, ".crabbox-owner.json"))
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
