package coder

import (
	"context"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/execx"
)

// TestNoTokenOnArgv drives every provider flow (doctor, acquire, resolve,
// release, cleanup, list) with a Coder session token in the environment and
// asserts that no recorded coder argv (nor any extra env crabbox adds)
// carries it or any token/session flag: the coder CLI reads its own
// environment and login.
func TestNoTokenOnArgv(t *testing.T) {
	const secret = "S3cr3tT0k3n-abcdef0123456789"
	t.Setenv("CODER_SESSION_TOKEN", secret)
	t.Setenv("CODER_URL", "https://coder.example.com/?token="+secret)
	t.Setenv("CODER_AGENT_TOKEN", secret+"-agent")

	h := newHarness(t, nil)
	h.fake.On("coder version", execx.Reply{Stdout: "Coder v2.27.0"})
	h.whoami().live()
	cn := h.onCreateRow(execx.Reply{}, func(name string) *wsRow {
		r := readyRow("alice", name, "ws-new")
		return &r
	})
	h.fake.On("coder stop", execx.Reply{Do: func(execx.Call) {
		h.mu.Lock()
		for i := range h.rows {
			h.rows[i].Status, h.rows[i].Transition, h.rows[i].Agent = "stopped", "stop", ""
		}
		h.mu.Unlock()
	}})
	h.fake.On("coder start", execx.Reply{Do: func(execx.Call) {
		h.mu.Lock()
		for i := range h.rows {
			h.rows[i].Status, h.rows[i].Transition, h.rows[i].Agent = "running", "start", "ready"
		}
		h.mu.Unlock()
	}})
	h.fake.On("coder delete", execx.Reply{})
	ctx := context.Background()
	ready := func(ctx context.Context, l *Lease) error { return nil }

	if rep := h.p.Doctor(ctx); !rep.OK {
		t.Fatalf("doctor: %+v", rep)
	}
	l, err := h.p.Acquire(ctx, AcquireRequest{Slug: "sec", Keep: true, RepoRoot: "/src/app", Ready: ready})
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	l2, err := h.p.Resolve(ctx, ResolveRequest{Ident: l.Slug, Mode: Prepare, RepoRoot: "/src/app", Ready: ready})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if _, err := h.p.List(ctx, true); err != nil {
		t.Fatalf("List: %v", err)
	}
	if _, err := h.p.Release(ctx, l2, ReleaseRequest{}); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if _, err := h.p.Cleanup(ctx, CleanupRequest{DryRun: false}); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	// A claimed, stopped workspace resolved for a run is started.
	h.setRows(stoppedRow("alice", blueName, "ws1"))
	h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1"))
	if _, err := h.p.Resolve(ctx, ResolveRequest{Ident: blueID, Mode: Prepare, RepoRoot: "/src/app", Ready: ready, Reclaim: true}); err != nil {
		t.Fatalf("Resolve stopped: %v", err)
	}
	_ = cn.get()

	calls := h.fake.Calls()
	seen := map[string]bool{}
	for _, c := range calls {
		seen[strings.Fields(c.Argv())[1]] = true
		for _, a := range append([]string{c.Name}, c.Args...) {
			if strings.Contains(a, secret) {
				t.Errorf("token on argv: %q", c.Argv())
			}
			la := strings.ToLower(a)
			if strings.HasPrefix(la, "-") && (strings.Contains(la, "token") || strings.Contains(la, "session")) {
				t.Errorf("token/session flag on argv: %q", c.Argv())
			}
		}
		for _, e := range c.Env {
			if strings.Contains(e, secret) || strings.Contains(strings.ToUpper(e), "TOKEN") {
				t.Errorf("token in extra env of %q: %q", c.Argv(), e)
			}
		}
		if strings.Contains(c.Stdin, secret) {
			t.Errorf("token on stdin of %q", c.Argv())
		}
	}
	for _, verb := range []string{"version", "whoami", "list", "create", "stop", "start"} {
		if !seen[verb] {
			t.Errorf("flow never ran coder %s (calls %q)", verb, h.fake.Argvs())
		}
	}
}
