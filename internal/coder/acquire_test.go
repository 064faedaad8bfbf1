package coder

import (
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
)

var leaseIDRe = regexp.MustCompile(`^cbx_[0-9a-f]{12}$`)

// createdName records the workspace name `coder create` was asked for.
type createdName struct {
	mu   sync.Mutex
	name string
}

func (c *createdName) set(call execx.Call) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.name = call.Args[len(call.Args)-1]
}

func (c *createdName) get() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.name
}

// onCreate scripts `coder create`: it records the name and, when appear is
// set, makes the workspace show up in the live listing (ready, ID ws-new).
func (h *harness) onCreate(reply execx.Reply, appear bool) *createdName {
	return h.onCreateRow(reply, func(name string) *wsRow {
		if !appear {
			return nil
		}
		r := readyRow("alice", name, "ws-new")
		return &r
	})
}

// onCreateRow is onCreate with the row that appears (nil: none) built from
// the created name.
func (h *harness) onCreateRow(reply execx.Reply, row func(name string) *wsRow) *createdName {
	cn := &createdName{}
	reply.Do = func(call execx.Call) {
		cn.set(call)
		if r := row(cn.get()); r != nil {
			h.addRow(*r)
		}
	}
	h.fake.On("coder create", reply)
	return cn
}

func TestAcquireHappyPath(t *testing.T) {
	cases := []struct {
		name       string
		mod        func(*Settings)
		keep       bool
		wantAction string
		wantNoWait bool
		connecting bool // the new workspace's agent is still connecting when listed
	}{
		{name: "defaults", wantAction: "stop"},
		{name: "keep and delete on release", keep: true, mod: func(s *Settings) { s.DeleteOnRelease = true }, wantAction: "delete"},
		{name: "wait no", mod: func(s *Settings) { s.Wait = "no" }, wantAction: "stop", wantNoWait: true},
		{name: "wait NO", mod: func(s *Settings) { s.Wait = "NO" }, wantAction: "stop", wantNoWait: true},
		{name: "wait auto", mod: func(s *Settings) { s.Wait = "auto" }, wantAction: "stop"},
		{name: "wait no, agent still connecting", mod: func(s *Settings) { s.Wait = "no" }, wantAction: "stop", wantNoWait: true, connecting: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.mod)
			h.whoami().live(stoppedRow("alice", "personal", "ws-personal"))
			cn := h.onCreateRow(execx.Reply{}, func(name string) *wsRow {
				r := readyRow("alice", name, "ws-new")
				if tc.connecting {
					r.Agent = "connecting"
				}
				return &r
			})

			var readyLeases []*Lease
			l, err := h.p.Acquire(context.Background(), AcquireRequest{
				Keep: tc.keep, RepoRoot: "/src/app",
				Ready: func(ctx context.Context, l *Lease) error {
					cp := *l
					readyLeases = append(readyLeases, &cp)
					return nil
				},
			})
			if err != nil {
				t.Fatalf("Acquire: %v", err)
			}
			name := cn.get()
			ref := "alice/" + name

			// Lease identity and name.
			if !leaseIDRe.MatchString(l.ID) {
				t.Errorf("lease ID %q is not canonical", l.ID)
			}
			if !regexp.MustCompile(`^crabbox-` + regexp.QuoteMeta(l.Slug) + `-[0-9a-f]{6}$`).MatchString(name) {
				t.Errorf("workspace name %q does not match crabbox-<slug %q>-<6 hex>", name, l.Slug)
			}
			if want, _ := UniqueWorkspaceName("crabbox-", l.Slug, l.ID); want != name {
				t.Errorf("name = %q, want UniqueWorkspaceName = %q", name, want)
			}
			if l.Slug != lease.GeneratedSlug(l.ID) {
				t.Errorf("slug = %q, want generated %q", l.Slug, lease.GeneratedSlug(l.ID))
			}

			// Calls.
			createArgv := "coder create --yes --template go-dev " + name
			if tc.wantNoWait {
				createArgv = "coder create --yes --template go-dev --no-wait " + name
			}
			got := h.argvs()
			assertInventoryThen(t, got, createArgv, argvList)
			for _, a := range got {
				if strings.Contains(a, "--wait") && !strings.Contains(a, "--no-wait") {
					t.Errorf("call %q passes --wait", a)
				}
			}

			// Provisioning event before create.
			prov := h.eventsOf(EventProvisioning)
			if len(prov) != 1 {
				t.Fatalf("provisioning events = %d, want 1", len(prov))
			}
			if n := h.callsBefore(EventProvisioning); n != 2 {
				t.Errorf("provisioning event after %d calls, want 2 (before create)", n)
			}
			if pl := prov[0].Lease; pl.ID != l.ID || pl.Workspace != name || pl.Slug != l.Slug || pl.Keep != tc.keep || pl.State != "provisioning" {
				t.Errorf("provisioning lease = %+v", pl)
			} else if pl.Labels["state"] != "provisioning" {
				t.Errorf("provisioning lease labels state = %q, want provisioning", pl.Labels["state"])
			}

			// Ready callback.
			if len(readyLeases) != 1 {
				t.Fatalf("Ready called %d times, want 1", len(readyLeases))
			}
			rl := readyLeases[0]
			if !strings.Contains(rl.Target.ProxyCommand, "'"+ref+"'") {
				t.Errorf("ProxyCommand %q does not carry %q", rl.Target.ProxyCommand, "'"+ref+"'")
			}
			if rl.ID != l.ID || rl.Ref != ref || rl.WorkspaceID != "ws-new" {
				t.Errorf("ready lease = id %q ref %q ws %q", rl.ID, rl.Ref, rl.WorkspaceID)
			}
			if rl.Target.User != "coder" || rl.Target.Port != 22 || rl.Target.WorkRoot != "/home/coder/crabbox" {
				t.Errorf("ready target = %+v", rl.Target)
			}

			// Returned lease.
			if l.Ref != ref || l.Workspace != name || l.WorkspaceID != "ws-new" || l.Owner != "alice" || !l.Ready || l.State != StateReady || l.Keep != tc.keep {
				t.Errorf("lease = %+v", l)
			}
			if l.Labels["state"] != l.State {
				t.Errorf("labels state = %q, lease state = %q", l.Labels["state"], l.State)
			}
			if l.Claim == nil || l.Claim.WorkspaceID != "ws-new" {
				t.Errorf("lease claim = %+v", l.Claim)
			}

			// Claim.
			all := h.allClaims()
			if len(all) != 1 {
				t.Fatalf("claims = %d, want 1", len(all))
			}
			c := all[0]
			if c.LeaseID != l.ID || c.CloudID != ref || c.WorkspaceID != "ws-new" || c.CoderURL != coderURL ||
				c.RepoRoot != "/src/app" || c.Provider != "coder" || c.Slug != l.Slug || c.IdleTimeoutSeconds != 1800 {
				t.Errorf("claim = %+v", c)
			}
			if c.LastUsedAt != testNow.Format("2006-01-02T15:04:05Z") {
				t.Errorf("claim lastUsedAt = %q", c.LastUsedAt)
			}
			for k, want := range map[string]string{
				"keep":                 map[bool]string{true: "true", false: "false"}[tc.keep],
				"coder_release_action": tc.wantAction,
				"lease":                l.ID,
				"slug":                 l.Slug,
				"coder_workspace":      name,
				"coder_workspace_ref":  ref,
				"state":                StateReady,
			} {
				if c.Labels[k] != want {
					t.Errorf("claim label %s = %q, want %q", k, c.Labels[k], want)
				}
			}
			if len(h.eventsOf(EventRollback)) != 0 {
				t.Errorf("unexpected rollback events %+v", h.eventsOf(EventRollback))
			}
		})
	}
}

func TestAcquireRefusesBeforeAnyCall(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Settings)
		req  AcquireRequest
		msg  string
	}{
		{"no template", func(s *Settings) { s.Template = "" }, AcquireRequest{RepoRoot: "/src/app"}, "coder.template"},
		{"blank template", func(s *Settings) { s.Template = "  " }, AcquireRequest{RepoRoot: "/src/app"}, "coder.template"},
		{"no repo root", nil, AcquireRequest{}, "repository root"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.mod)
			h.whoami().live()
			_, err := h.p.Acquire(context.Background(), tc.req)
			wantExit(t, err, exitcode.Usage, tc.msg)
			if got := h.argvs(); len(got) != 0 {
				t.Errorf("coder calls = %q, want none", got)
			}
			if len(h.allClaims()) != 0 {
				t.Error("a claim was written")
			}
		})
	}
}

func TestAcquireRequestedSlugCollision(t *testing.T) {
	cases := []struct {
		name string
		prep func(h *harness)
	}{
		{"another claim has the slug", func(h *harness) {
			h.claim(coderClaim("cbx_111111111111", "blue-lobster", "alice/crabbox-blue-lobster-aaaaaa", "ws-other"))
			h.live(readyRow("alice", "crabbox-blue-lobster-aaaaaa", "ws-other"))
		}},
		{"another claim has the slug unnormalized", func(h *harness) {
			h.claim(coderClaim("cbx_111111111111", "Blue_Lobster", "alice/whatever", "ws-other"))
			h.live()
		}},
		{"an owned workspace carries the slug label", func(h *harness) {
			h.live(readyRow("alice", "team-workspace", "ws-team").withLabels("crabbox", "true", "slug", "blue-lobster"))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.whoami()
			tc.prep(h)
			cn := h.onCreate(execx.Reply{}, true)
			l, err := h.p.Acquire(context.Background(), AcquireRequest{Slug: "blue-lobster", RepoRoot: "/src/app"})
			if err != nil {
				t.Fatalf("Acquire: %v", err)
			}
			if l.Slug == "blue-lobster" || !regexp.MustCompile(`^blue-lobster-[0-9a-f]{4}$`).MatchString(l.Slug) {
				t.Errorf("slug = %q, want blue-lobster-<4 hex>", l.Slug)
			}
			if !strings.HasPrefix(cn.get(), "crabbox-blue-lobster-") {
				t.Errorf("name = %q", cn.get())
			}
			if c := h.getClaim(l.ID); c == nil || c.Slug != l.Slug {
				t.Errorf("claim = %+v", c)
			}
		})
	}

	// A free requested slug is kept as is.
	h := newHarness(t, nil)
	h.whoami().live()
	h.onCreate(execx.Reply{}, true)
	l, err := h.p.Acquire(context.Background(), AcquireRequest{Slug: "blue-lobster", RepoRoot: "/src/app"})
	if err != nil || l.Slug != "blue-lobster" {
		t.Fatalf("free slug: %v %+v", err, l)
	}
}

func TestAcquireInventoryFailureWritesNothing(t *testing.T) {
	h := newHarness(t, nil)
	h.whoami()
	h.fake.On(argvList, execx.Reply{ExitCode: 1, Stderr: "inventory unavailable"})
	_, err := h.p.Acquire(context.Background(), AcquireRequest{RepoRoot: "/src/app"})
	wantExit(t, err, 1, "inventory unavailable")
	assertInventoryThen(t, h.argvs())
	if len(h.allClaims()) != 0 {
		t.Error("claim written although nothing was created")
	}
}

// TestAcquireRollback is the rollback matrix of a failed acquisition: only
// the workspace just created is ever stopped or deleted.
func TestAcquireRollback(t *testing.T) {
	type tcase struct {
		name         string
		deleteOn     bool
		keep         bool
		createFails  bool // coder create exits 1 "build failed"
		appears      bool // the workspace shows up in coder list
		relistFails  bool // every list after the first fails
		readyErr     error
		releaseFails bool // the rollback stop/delete fails

		wantCode  int
		wantErr   []string // "<name>" is replaced by the created name
		wantTail  []string // calls after whoami+list
		wantClaim bool
		wantWSID  string // expected claim workspace ID when kept
	}
	create := "coder create --yes --template go-dev <name>"
	cases := []tcase{
		{name: "create fails, absent, stop policy", createFails: true,
			wantCode: 1, wantErr: []string{"build failed"}, wantTail: []string{create, argvList}},
		{name: "create fails, absent, delete policy", createFails: true, deleteOn: true,
			wantCode: 1, wantErr: []string{"build failed"}, wantTail: []string{create, argvList}},
		{name: "create fails, present, stop policy", createFails: true, appears: true,
			wantCode: 1, wantErr: []string{"build failed"}, wantTail: []string{create, argvList, "coder stop --yes alice/<name>"}},
		{name: "create fails, present, delete policy", createFails: true, appears: true, deleteOn: true,
			wantCode: 1, wantErr: []string{"build failed"}, wantTail: []string{create, argvList, "coder delete --yes alice/<name>"}},
		{name: "create fails, list fails", createFails: true, appears: true, relistFails: true,
			wantCode: 1, wantErr: []string{"build failed", "crabbox stop --provider coder --target linux --coder-delete-on-release=false --id <name>", "claim is kept"},
			wantTail: []string{create, argvList}, wantClaim: true},
		{name: "create fails, list fails, delete policy", createFails: true, relistFails: true, deleteOn: true,
			wantCode: 1, wantErr: []string{"build failed", "crabbox stop --provider coder --target linux --coder-delete-on-release=true --id <name>"},
			wantTail: []string{create, argvList}, wantClaim: true},
		{name: "post-create list fails, stop policy", appears: true, relistFails: true,
			wantCode: 1, wantErr: []string{"inventory unavailable"}, wantTail: []string{create, argvList, "coder stop --yes alice/<name>"}},
		{name: "post-create list fails, delete policy", appears: true, relistFails: true, deleteOn: true,
			wantCode: 1, wantErr: []string{"inventory unavailable"}, wantTail: []string{create, argvList, "coder delete --yes alice/<name>"}},
		{name: "row missing after create", appears: false,
			wantCode: 5, wantErr: []string{"<name> was created but not found"}, wantTail: []string{create, argvList, "coder stop --yes alice/<name>"}},
		{name: "row missing after create, delete policy", appears: false, deleteOn: true,
			wantCode: 5, wantErr: []string{"created but not found"}, wantTail: []string{create, argvList, "coder delete --yes alice/<name>"}},
		{name: "ready fails, stop policy", appears: true, readyErr: exitcode.Errorf(exitcode.Transport, "ssh never answered"),
			wantCode: 7, wantErr: []string{"ssh never answered"}, wantTail: []string{create, argvList, "coder stop --yes alice/<name>"}},
		{name: "ready fails, delete policy", appears: true, deleteOn: true, readyErr: exitcode.Errorf(exitcode.Transport, "ssh never answered"),
			wantCode: 7, wantErr: []string{"ssh never answered"}, wantTail: []string{create, argvList, "coder delete --yes alice/<name>"}},
		{name: "rollback stop fails", appears: true, readyErr: exitcode.Errorf(exitcode.Transport, "ssh never answered"), releaseFails: true,
			wantCode: 7, wantErr: []string{"ssh never answered", "coder rollback stop failed for workspace <name>", "to clean up by hand: next: `crabbox stop --provider coder --target linux --coder-delete-on-release=false --id <name>`", "agent exploded"},
			wantTail: []string{create, argvList, "coder stop --yes alice/<name>"}, wantClaim: true, wantWSID: "ws-new"},
		{name: "rollback delete fails", appears: true, deleteOn: true, readyErr: exitcode.Errorf(exitcode.Transport, "ssh never answered"), releaseFails: true,
			wantCode: 7, wantErr: []string{"coder rollback delete failed", "to clean up by hand: next: `crabbox stop --provider coder --target linux --coder-delete-on-release=true --id <name>`"},
			wantTail: []string{create, argvList, "coder delete --yes alice/<name>"}, wantClaim: true, wantWSID: "ws-new"},
		{name: "rollback after failed create fails", createFails: true, appears: true, releaseFails: true,
			wantCode: 1, wantErr: []string{"build failed", "to clean up by hand: next: `crabbox stop --provider coder --target linux --coder-delete-on-release=false --id <name>`"},
			wantTail: []string{create, argvList, "coder stop --yes alice/<name>"}, wantClaim: true, wantWSID: "ws-new"},
		{name: "keep, post-create list fails", keep: true, appears: true, relistFails: true,
			wantCode: 1, wantErr: []string{"inventory unavailable", "kept"}, wantTail: []string{create, argvList}, wantClaim: true},
		{name: "keep, row missing", keep: true, deleteOn: true,
			wantCode: 5, wantErr: []string{"created but not found", "--coder-delete-on-release"}, wantTail: []string{create, argvList}, wantClaim: true},
		{name: "keep, ready fails", keep: true, appears: true, readyErr: exitcode.Errorf(exitcode.Transport, "ssh never answered"),
			wantCode: 7, wantErr: []string{"ssh never answered"}, wantTail: []string{create, argvList}, wantClaim: true, wantWSID: "ws-new"},
		{name: "keep, create fails, absent", keep: true, createFails: true,
			wantCode: 1, wantErr: []string{"build failed"}, wantTail: []string{create, argvList}},
		{name: "keep, create fails, present", keep: true, createFails: true, appears: true,
			wantCode: 1, wantErr: []string{"build failed", "kept"}, wantTail: []string{create, argvList}, wantClaim: true, wantWSID: "ws-new"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(s *Settings) { s.DeleteOnRelease = tc.deleteOn })
			h.whoami()
			h.setRows(stoppedRow("alice", "personal", "ws-personal"))
			if tc.relistFails {
				h.fake.On(argvList, execx.Reply{Stdout: liveRows}, execx.Reply{ExitCode: 1, Stderr: "inventory unavailable"})
			} else {
				h.fake.On(argvList, execx.Reply{Stdout: liveRows})
			}
			createReply := execx.Reply{}
			if tc.createFails {
				createReply = execx.Reply{ExitCode: 1, Stderr: "build failed"}
			}
			cn := h.onCreate(createReply, tc.appears)
			var releaseReply execx.Reply
			if tc.releaseFails {
				releaseReply = execx.Reply{ExitCode: 1, Stderr: "agent exploded"}
			}
			h.fake.On("coder stop", releaseReply)
			h.fake.On("coder delete", releaseReply)

			req := AcquireRequest{Keep: tc.keep, RepoRoot: "/src/app"}
			if tc.readyErr != nil {
				req.Ready = func(context.Context, *Lease) error { return tc.readyErr }
			}
			l, err := h.p.Acquire(context.Background(), req)
			if l != nil {
				t.Errorf("lease = %+v, want nil on failure", l)
			}
			name := cn.get()
			if name == "" {
				t.Fatal("coder create was not called")
			}
			sub := func(s string) string { return strings.ReplaceAll(s, "<name>", name) }
			var wantErr []string
			for _, w := range tc.wantErr {
				wantErr = append(wantErr, sub(w))
			}
			wantExit(t, err, tc.wantCode, wantErr...)
			var tail []string
			for _, w := range tc.wantTail {
				tail = append(tail, sub(w))
			}
			got := h.argvs()
			assertInventoryThen(t, got, tail...)
			if countCalls(got, argvWhoami) != 1 {
				t.Errorf("whoami asked %d times, want once", countCalls(got, argvWhoami))
			}
			for _, a := range got {
				if (strings.HasPrefix(a, "coder stop") || strings.HasPrefix(a, "coder delete")) && !strings.HasSuffix(a, " alice/"+name) {
					t.Errorf("rollback touched another workspace: %q", a)
				}
			}

			mutated := strings.HasPrefix(tail[len(tail)-1], "coder stop") || strings.HasPrefix(tail[len(tail)-1], "coder delete")
			if n := len(h.eventsOf(EventRollback)); mutated != (n > 0) {
				t.Errorf("rollback events = %d, mutation = %v", n, mutated)
			}

			all := h.allClaims()
			if !tc.wantClaim {
				if len(all) != 0 {
					t.Errorf("claims = %+v, want none", all)
				}
				return
			}
			if len(all) != 1 {
				t.Fatalf("claims = %d, want 1", len(all))
			}
			c := all[0]
			if c.CloudID != "alice/"+name || c.Labels["coder_workspace_ref"] != "alice/"+name || c.Labels["coder_workspace"] != name {
				t.Errorf("kept claim does not name the workspace: cloudID %q labels %v", c.CloudID, c.Labels)
			}
			if c.WorkspaceID != tc.wantWSID {
				t.Errorf("kept claim workspace ID = %q, want %q", c.WorkspaceID, tc.wantWSID)
			}
			if c.Labels["keep"] != map[bool]string{true: "true", false: "false"}[tc.keep] {
				t.Errorf("kept claim keep label = %q", c.Labels["keep"])
			}
		})
	}
}

// A rollback runs even when the caller's context was cancelled (Ctrl-C
// during the readiness wait).
func TestAcquireRollbackSurvivesCancel(t *testing.T) {
	h := newHarness(t, nil)
	h.whoami().live()
	cn := h.onCreate(execx.Reply{}, true)
	h.fake.On("coder stop", execx.Reply{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := h.p.Acquire(ctx, AcquireRequest{RepoRoot: "/src/app", Ready: func(ctx context.Context, _ *Lease) error {
		cancel()
		return ctx.Err()
	}})
	if err == nil {
		t.Fatal("no error")
	}
	got := h.argvs()
	if got[len(got)-1] != "coder stop --yes alice/"+cn.get() {
		t.Errorf("calls = %q; want a final stop", got)
	}
	if len(h.allClaims()) != 0 {
		t.Error("claim kept after a successful rollback")
	}
}
