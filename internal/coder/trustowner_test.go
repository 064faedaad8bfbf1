package coder

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

func TestSameURL(t *testing.T) {
	cases := []struct {
		a, b string
		same bool
	}{
		{"http://localhost:17080", "http://127.0.0.1:17080/", false},
		{"HTTP://Host:80/", "http://host", true},
		{"https://Coder.Example.com:443", "https://coder.example.com/", true},
		{"https://coder.example.com", "http://coder.example.com", false},
		{"https://coder.example.com:8443", "https://coder.example.com", false},
		{"https://coder.example.com/path/", "https://coder.example.com/path", true},
		{"https://coder.example.com/a", "https://coder.example.com/b", false},
		{"http://[::1]:80/", "http://[::1]", true},
	}
	for _, tc := range cases {
		if got := sameURL(tc.a, tc.b); got != tc.same {
			t.Errorf("sameURL(%q, %q) = %v (%q vs %q), want %v", tc.a, tc.b, got, NormalizeURL(tc.a), NormalizeURL(tc.b), tc.same)
		}
	}
}

// A claim whose workspace ID, name or owner differs from Coder's listing is
// refused before any mutation (stop, start, claim rewrite), naming the field.
func TestClaimCheckedAgainstListing(t *testing.T) {
	const redName = "crabbox-red-crab-def456"
	cases := []struct {
		name  string
		claim claims.Claim
		field string
	}{
		{"swapped workspace ID", coderClaim(blueID, "blue-lobster", blueRef, "ws2"), "workspace name"},
		{"another workspace's name", coderClaim(blueID, "blue-lobster", "alice/"+redName, "ws1"), "workspace name"},
		{"name label differs", coderClaim(blueID, "blue-lobster", blueRef, "ws1", "coder_workspace", redName), "workspace name"},
		{"another owner", coderClaim(blueID, "blue-lobster", "bob/"+blueName, "ws1", "coder_workspace_ref", "bob/"+blueName), "owner"},
	}
	for _, tc := range cases {
		for _, mode := range []Mode{ReleaseOnly, Prepare} {
			t.Run(tc.name+map[Mode]string{ReleaseOnly: "/stop", Prepare: "/prepare"}[mode], func(t *testing.T) {
				h := newHarness(t, nil)
				h.claim(tc.claim)
				rows := []wsRow{stoppedRow("alice", blueName, "ws1"), stoppedRow("alice", redName, "ws2")}
				h.whoami().list(rows...).listAll(rows...)
				h.fake.On("coder stop", execx.Reply{})
				h.fake.On("coder start", execx.Reply{})
				h.fake.On("coder delete", execx.Reply{})
				before, _ := os.ReadFile(h.store.Path(blueID))
				var err error
				if mode == ReleaseOnly {
					_, _, err = resolveAndRelease(h, blueID)
				} else {
					_, err = h.p.Resolve(context.Background(), ResolveRequest{Ident: blueID, Mode: Prepare, RepoRoot: "/src/app"})
				}
				wantExit(t, err, exitcode.Usage, "refusing", tc.field, "nothing was changed")
				assertNoStopOrDelete(t, h.argvs())
				if after, _ := os.ReadFile(h.store.Path(blueID)); string(after) != string(before) {
					t.Errorf("claim rewritten:\n%s\n->\n%s", before, after)
				}
			})
		}
	}
}

func TestReleaseOtherRepoNeedsReclaim(t *testing.T) {
	for _, reclaim := range []bool{false, true} {
		h := newHarness(t, nil)
		h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1"))
		h.whoami().list(readyRow("alice", blueName, "ws1"))
		h.fake.On("coder stop", execx.Reply{})
		l, err := h.p.Resolve(context.Background(), ResolveRequest{Ident: blueID, Mode: ReleaseOnly})
		if err != nil {
			t.Fatal(err)
		}
		_, err = h.p.Release(context.Background(), l, ReleaseRequest{RepoRoot: "/src/other", Reclaim: reclaim})
		if !reclaim {
			wantRefused(t, err, "claimed by repo /src/app", "next: `crabbox stop --reclaim "+blueID+"`", "nothing was changed")
			assertNoStopOrDelete(t, h.argvs())
			if h.getClaim(blueID) == nil {
				t.Error("claim removed by a refused stop")
			}
			continue
		}
		if err != nil {
			t.Fatalf("stop --reclaim: %v", err)
		}
		assertInventoryThen(t, h.argvs(), "coder stop --yes "+blueRef)
	}
}

// A claim file exactly as today's main writes it (no create-settings
// labels) keeps working: it resolves, stops, and leaves a released record
// that is listed and deletable but never reused (its create key is unknown).
func TestClaimFileFromMainStillWorks(t *testing.T) {
	h := newHarness(t, nil)
	const mainClaim = `{
  "leaseID": "cbx_aaaaaaaaaaaa",
  "revision": "0123456789abcdef0123456789abcdef",
  "slug": "blue-lobster",
  "provider": "coder",
  "cloudID": "alice/crabbox-blue-lobster-abc123",
  "workspaceID": "ws1",
  "coderURL": "https://coder.example.com/",
  "repoRoot": "/src/app",
  "claimedAt": "2026-08-20T11:00:00Z",
  "lastUsedAt": "2026-08-20T11:59:00Z",
  "idleTimeoutSeconds": 1800,
  "targetOS": "linux",
  "labels": {
    "coder_release_action": "stop",
    "coder_workspace": "crabbox-blue-lobster-abc123",
    "coder_workspace_ref": "alice/crabbox-blue-lobster-abc123",
    "crabbox": "true",
    "created_at": "1786000000",
    "created_by": "crabbox",
    "keep": "false",
    "last_touched_at": "1786000000",
    "lease": "cbx_aaaaaaaaaaaa",
    "provider": "coder",
    "slug": "blue-lobster",
    "state": "ready",
    "target": "linux",
    "work_root": "/home/coder/crabbox"
  }
}
`
	if err := os.MkdirAll(h.store.ClaimsDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.store.Path(blueID), []byte(mainClaim), 0o600); err != nil {
		t.Fatal(err)
	}
	h.whoami().list(readyRow("alice", blueName, "ws1"))
	h.fake.On("coder stop", execx.Reply{})
	_, res, err := resolveAndRelease(h, blueName)
	if err != nil || !res.Released {
		t.Fatalf("stop: %+v %v", res, err)
	}
	recs, _ := h.store.ListReleased()
	if len(recs) != 1 || recs[0].LeaseID != blueID || recs[0].WorkspaceID != "ws1" || recs[0].CreateKey != "" {
		t.Fatalf("released records = %+v", recs)
	}
	// Not reused: a create follows.
	h2 := newHarness(t, nil)
	h2.store = h.store
	h2.p.Claims = h.store
	h2.whoami().live(stoppedRow("alice", blueName, "ws1"))
	cn := h2.onCreate(execx.Reply{}, true)
	if _, err := h2.p.Acquire(context.Background(), AcquireRequest{RepoRoot: "/src/app", Reuse: true}); err != nil {
		t.Fatal(err)
	}
	if cn.get() == "" {
		t.Errorf("no create: %q", h2.argvs())
	}
}

// releasedHarness has one lease released by stopping (a released record
// for ws1, created with the default settings) and ws1 stopped.
func releasedHarness(t *testing.T, mod func(*Settings)) *harness {
	t.Helper()
	h := newHarness(t, mod)
	c := coderClaim(blueID, "blue-lobster", blueRef, "ws1", "coder_create_key", defaultSettings().CreateKey())
	h.claim(c)
	h.whoami().list(readyRow("alice", blueName, "ws1"))
	h.fake.On("coder stop", execx.Reply{})
	if _, res, err := resolveAndRelease(h, blueID); err != nil || !res.Released {
		t.Fatalf("release: %+v %v", res, err)
	}
	if len(h.allClaims()) != 0 {
		t.Fatal("claim kept")
	}
	h.fake = execx.NewFake()
	return h
}

func TestReleasedWorkspaceIsReused(t *testing.T) {
	cases := []struct {
		name      string
		mod       func(*Settings)
		row       wsRow
		req       AcquireRequest
		wantReuse bool
		wantKept  bool // the released record is still there afterwards
	}{
		{name: "same settings: started", row: stoppedRow("alice", blueName, "ws1"), req: AcquireRequest{RepoRoot: "/src/app", Reuse: true}, wantReuse: true},
		{name: "--fresh-workspace: created", row: stoppedRow("alice", blueName, "ws1"), req: AcquireRequest{RepoRoot: "/src/app"}, wantKept: true},
		{name: "other parameters: created", mod: func(s *Settings) { s.Parameters = []string{"cpu=4"} },
			row: stoppedRow("alice", blueName, "ws1"), req: AcquireRequest{RepoRoot: "/src/app", Reuse: true}, wantKept: true},
		{name: "other preset: created", mod: func(s *Settings) { s.Preset = "big" },
			row: stoppedRow("alice", blueName, "ws1"), req: AcquireRequest{RepoRoot: "/src/app", Reuse: true}, wantKept: true},
		{name: "other repo: created", row: stoppedRow("alice", blueName, "ws1"), req: AcquireRequest{RepoRoot: "/src/other", Reuse: true}, wantKept: true},
		{name: "delete on release: created", mod: func(s *Settings) { s.DeleteOnRelease = true },
			row: stoppedRow("alice", blueName, "ws1"), req: AcquireRequest{RepoRoot: "/src/app", Reuse: true}, wantKept: true},
		{name: "requested slug: created", row: stoppedRow("alice", blueName, "ws1"), req: AcquireRequest{Slug: "mine", RepoRoot: "/src/app", Reuse: true}, wantKept: true},
		{name: "running (started outside): created", row: readyRow("alice", blueName, "ws1"), req: AcquireRequest{RepoRoot: "/src/app", Reuse: true}, wantKept: true},
		{name: "recreated outside (ID differs): record dropped, created", row: stoppedRow("alice", blueName, "ws9"), req: AcquireRequest{RepoRoot: "/src/app", Reuse: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := releasedHarness(t, nil)
			if tc.mod != nil {
				tc.mod(&h.p.Settings)
			}
			h.fake.On(argvWhoami, execx.Reply{Stdout: aliceWhoami})
			h.live(tc.row)
			h.fake.On("coder start", execx.Reply{Do: func(execx.Call) {
				r := tc.row
				r.Status, r.Transition, r.Agent = "running", "start", "ready"
				h.setRows(r)
			}})
			cn := h.onCreate(execx.Reply{}, true)
			l, err := h.p.Acquire(context.Background(), tc.req)
			if err != nil {
				t.Fatalf("Acquire: %v (calls %q)", err, h.argvs())
			}
			started := false
			for _, a := range h.argvs() {
				if a == "coder start --yes "+blueRef {
					started = true
				}
			}
			if tc.wantReuse {
				if !started || cn.get() != "" || l.WorkspaceID != "ws1" || l.ID == blueID {
					t.Errorf("want ws1 started for a new lease: started=%v created=%q lease=%s ws=%s", started, cn.get(), l.ID, l.WorkspaceID)
				}
				if c := h.getClaim(l.ID); c == nil || c.WorkspaceID != "ws1" || c.CloudID != blueRef {
					t.Errorf("new claim = %+v", c)
				}
				if len(h.eventsOf(EventReusing)) != 1 {
					t.Error("no reusing event")
				}
			} else if started || cn.get() == "" {
				t.Errorf("want a create: started=%v created=%q", started, cn.get())
			}
			recs, _ := h.store.ListReleased()
			if kept := len(recs) == 1; kept != tc.wantKept {
				t.Errorf("released records after = %+v, want kept=%v", recs, tc.wantKept)
			}
		})
	}
}

func TestCleanupReleased(t *testing.T) {
	cases := []struct {
		name     string
		req      CleanupRequest
		row      *wsRow
		age      time.Duration
		wantAct  string
		wantCall string
		wantKept bool
	}{
		{name: "no flag: reported only", req: CleanupRequest{}, row: &wsRow{ID: "ws1", Owner: "alice", Name: blueName, Status: "stopped", Transition: "stop"}, wantKept: true},
		{name: "old enough: deleted", req: CleanupRequest{DeleteReleased: true, ReleasedOlderThan: time.Hour}, age: 2 * time.Hour,
			row: &wsRow{ID: "ws1", Owner: "alice", Name: blueName, Status: "stopped", Transition: "stop"}, wantAct: ActionDelete, wantCall: "coder delete --yes " + blueRef},
		{name: "too young: kept", req: CleanupRequest{DeleteReleased: true, ReleasedOlderThan: 7 * 24 * time.Hour}, age: time.Hour,
			row: &wsRow{ID: "ws1", Owner: "alice", Name: blueName, Status: "stopped", Transition: "stop"}, wantKept: true},
		{name: "dry run: nothing", req: CleanupRequest{DryRun: true, DeleteReleased: true}, row: &wsRow{ID: "ws1", Owner: "alice", Name: blueName, Status: "stopped", Transition: "stop"},
			wantAct: ActionDelete, wantKept: true},
		{name: "running: kept", req: CleanupRequest{DeleteReleased: true}, row: func() *wsRow { r := readyRow("alice", blueName, "ws1"); return &r }(), wantKept: true},
		{name: "recreated (ID differs): record dropped, nothing deleted", req: CleanupRequest{DeleteReleased: true},
			row: &wsRow{ID: "ws9", Owner: "alice", Name: blueName, Status: "stopped", Transition: "stop"}, wantAct: ActionForget},
		{name: "gone: record dropped", req: CleanupRequest{DeleteReleased: true}, wantAct: ActionForget},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := releasedHarness(t, nil)
			h.p.Now = func() time.Time { return testNow.Add(tc.age) }
			h.fake.On(argvWhoami, execx.Reply{Stdout: aliceWhoami})
			if tc.row != nil {
				h.list(*tc.row)
			} else {
				h.list()
			}
			h.fake.On("coder delete", execx.Reply{})
			ds, err := h.p.Cleanup(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			var act string
			for _, d := range ds {
				if d.LeaseID == blueID {
					act = d.Action
				}
			}
			if act != tc.wantAct {
				t.Errorf("action = %q, want %q (%+v)", act, tc.wantAct, ds)
			}
			if tc.wantCall != "" {
				if got := h.argvs(); got[len(got)-1] != tc.wantCall {
					t.Errorf("calls = %q, want the last to be %q", got, tc.wantCall)
				}
			} else {
				assertNoStopOrDelete(t, h.argvs())
			}
			recs, _ := h.store.ListReleased()
			if kept := len(recs) == 1; kept != tc.wantKept {
				t.Errorf("records after = %+v, want kept=%v", recs, tc.wantKept)
			}
		})
	}
}

func TestListAndStopReleased(t *testing.T) {
	h := releasedHarness(t, nil)
	h.fake.On(argvWhoami, execx.Reply{Stdout: aliceWhoami})
	h.list(stoppedRow("alice", blueName, "ws1"))
	ls, err := h.p.List(context.Background(), false)
	if err != nil || len(ls) != 1 || ls[0].ID != blueID || ls[0].State != StateReleased {
		t.Fatalf("list = %+v %v", ls, err)
	}
	before, _ := h.store.ListReleased()
	h.p.Now = func() time.Time { return testNow.Add(time.Hour) }
	for _, ident := range []string{blueName, blueID} {
		l, res, err := resolveAndRelease(h, ident)
		if err != nil || res.Action != ActionStop || res.Skipped == "" || l.ID != blueID {
			t.Fatalf("stop %s of a released workspace: %+v %v", ident, res, err)
		}
	}
	assertNoStopOrDelete(t, h.argvs())
	if after, _ := h.store.ListReleased(); len(after) != 1 || after[0].ReleasedAt != before[0].ReleasedAt {
		t.Errorf("a no-op stop changed the record: %+v -> %+v", before, after)
	}
	// --coder-delete-on-release deletes it and drops the record.
	h.p.Settings.ReleaseOverride = ActionDelete
	h.fake.On("coder delete", execx.Reply{})
	if _, res, err := resolveAndRelease(h, blueName); err != nil || res.Action != ActionDelete {
		t.Fatalf("delete: %+v %v", res, err)
	}
	if recs, _ := h.store.ListReleased(); len(recs) != 0 {
		t.Errorf("records after delete: %+v", recs)
	}
}

func TestCreateKey(t *testing.T) {
	dir := t.TempDir()
	rich := filepath.Join(dir, "rich.yaml")
	if err := os.WriteFile(rich, []byte("cpu: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := Settings{Template: "go-dev", Preset: "small", Parameters: []string{"a=1", "b=2"}, RichParameterFile: rich}
	k := base.CreateKey()
	same := base
	same.Parameters = []string{"b=2", "a=1"}
	same.Template = "Go-Dev"
	if same.CreateKey() != k {
		t.Error("parameter order or template case changed the key")
	}
	for name, mod := range map[string]func(*Settings){
		"template": func(s *Settings) { s.Template = "other" },
		"preset":   func(s *Settings) { s.Preset = "" },
		"param":    func(s *Settings) { s.Parameters = []string{"a=1"} },
		"defaults": func(s *Settings) { s.UseParameterDefaults = true },
		"rich":     func(s *Settings) { s.RichParameterFile = "" },
	} {
		s := base
		mod(&s)
		if s.CreateKey() == k {
			t.Errorf("%s change kept the key", name)
		}
	}
	if err := os.WriteFile(rich, []byte("cpu: 4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if base.CreateKey() == k {
		t.Error("rich parameter file content change kept the key")
	}
	if !strings.HasPrefix(k, "") || len(k) != 32 {
		t.Errorf("key %q", k)
	}
}

// Two parallel one-shot acquisitions with one released workspace: exactly
// one starts it, the other creates (the take is exclusive).
func TestReleasedReuseIsExclusive(t *testing.T) {
	h := releasedHarness(t, nil)
	h.fake.On(argvWhoami, execx.Reply{Stdout: aliceWhoami})
	h.live(stoppedRow("alice", blueName, "ws1"))
	h.fake.On("coder start", execx.Reply{Do: func(execx.Call) {
		h.setRows(readyRow("alice", blueName, "ws1"))
	}})
	h.onCreateRow(execx.Reply{}, func(name string) *wsRow { r := readyRow("alice", name, "ws-"+name); return &r })
	type res struct {
		l   *Lease
		err error
	}
	out := make(chan res, 2)
	for i := 0; i < 2; i++ {
		go func() {
			l, err := h.p.Acquire(context.Background(), AcquireRequest{RepoRoot: "/src/app", Reuse: true})
			out <- res{l, err}
		}()
	}
	onWS1 := 0
	for i := 0; i < 2; i++ {
		r := <-out
		if r.err != nil {
			t.Fatalf("Acquire: %v", r.err)
		}
		if r.l.WorkspaceID == "ws1" {
			onWS1++
		}
	}
	if onWS1 != 1 {
		t.Errorf("%d leases on the released workspace, want 1 (calls %q)", onWS1, h.argvs())
	}
}
