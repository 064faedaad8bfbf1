package coder

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// Shared harness for the lifecycle tests (acquire, resolve, release,
// cleanup, list, doctor): a recording execx.Fake playing `coder`, a claims
// store in a temp dir, a fixed clock and an event recorder.

const (
	aliceWhoami = `[{"url":"https://coder.example.com","username":"alice","user_id":"u1"}]`
	coderURL    = "https://coder.example.com"

	argvWhoami  = "coder whoami -o json"
	argvList    = "coder list -o json"
	argvListAll = "coder list --all -o json"

	// liveRows, as a scripted reply's Stdout, is replaced by the harness's
	// current rows, so a `Reply.Do` (e.g. on create or start) can change
	// what the next listing returns.
	liveRows = "@live-rows"
)

var testNow = time.Date(2026, 8, 20, 12, 0, 0, 0, time.UTC)

// wsRow is one workspace the fake `coder list` reports.
type wsRow struct {
	ID, Owner, Name string
	Status          string // build status: running, stopped, ...
	Transition      string // start, stop
	Agent           string // "" no agent, "ready" connected+ready, "connecting"
	Labels          map[string]string
}

func readyRow(owner, name, id string) wsRow {
	return wsRow{ID: id, Owner: owner, Name: name, Status: "running", Transition: "start", Agent: "ready"}
}

func stoppedRow(owner, name, id string) wsRow {
	return wsRow{ID: id, Owner: owner, Name: name, Status: "stopped", Transition: "stop"}
}

func (r wsRow) withLabels(kv ...string) wsRow {
	r.Labels = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Labels[kv[i]] = kv[i+1]
	}
	return r
}

func (r wsRow) object() map[string]any {
	o := map[string]any{"id": r.ID, "name": r.Name, "template_name": "go-dev"}
	if r.Owner != "" {
		o["owner_name"] = r.Owner
	}
	var agents []any
	switch r.Agent {
	case "ready":
		agents = append(agents, map[string]any{"name": "main", "operating_system": "linux", "status": "connected", "lifecycle_state": "ready"})
	case "connecting":
		agents = append(agents, map[string]any{"name": "main", "operating_system": "linux", "status": "connecting", "lifecycle_state": "starting"})
	}
	lb := map[string]any{"status": r.Status, "transition": r.Transition}
	if agents != nil {
		lb["resources"] = []any{map[string]any{"name": "dev", "type": "docker_container", "agents": agents}}
	}
	o["latest_build"] = lb
	if r.Labels != nil {
		o["labels"] = r.Labels
	}
	return o
}

func rowsJSON(rows ...wsRow) string {
	objs := make([]any, 0, len(rows))
	for _, r := range rows {
		objs = append(objs, r.object())
	}
	b, err := json.Marshal(objs)
	if err != nil {
		panic(err)
	}
	return string(b)
}

type harness struct {
	t     *testing.T
	fake  *execx.Fake
	store *claims.Store
	p     *Provider

	mu     sync.Mutex
	rows   []wsRow // rendered for liveRows replies
	events []Event
	// callsAt records, per event, how many coder calls had been made when
	// it was emitted.
	callsAt []int
}

func defaultSettings() Settings {
	return Settings{
		CLI:         "coder",
		Template:    "go-dev",
		Prefix:      "crabbox-",
		WorkRoot:    "/home/coder/crabbox",
		Wait:        "yes",
		IdleTimeout: 30 * time.Minute,
	}
}

// newHarness builds a Provider over a fake coder. mod may adjust the
// settings. whoami answers as alice unless the test scripts it otherwise
// before the first call (longest prefix wins, so tests re-script with On).
func newHarness(t *testing.T, mod func(*Settings)) *harness {
	t.Helper()
	s := defaultSettings()
	if mod != nil {
		mod(&s)
	}
	h := &harness{t: t, fake: execx.NewFake(), store: claims.New(t.TempDir())}
	h.p = &Provider{
		Client:    &Client{Runner: h, CLI: "coder"},
		Claims:    h.store,
		Settings:  s,
		ConfigDir: t.TempDir(),
		Now:       func() time.Time { return testNow },
		Events: func(e Event) {
			n := len(h.fake.Calls())
			h.mu.Lock()
			defer h.mu.Unlock()
			h.events = append(h.events, e)
			h.callsAt = append(h.callsAt, n)
		},
	}
	return h
}

// Run implements execx.Runner: the fake answers, and a liveRows reply is
// rendered from the current rows.
func (h *harness) Run(ctx context.Context, c execx.Cmd) (execx.Result, error) {
	res, err := h.fake.Run(ctx, c)
	if string(res.Stdout) == liveRows {
		h.mu.Lock()
		res.Stdout = []byte(rowsJSON(h.rows...))
		h.mu.Unlock()
	}
	return res, err
}

func (h *harness) setRows(rows ...wsRow) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rows = append([]wsRow(nil), rows...)
}

func (h *harness) addRow(r wsRow) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rows = append(h.rows, r)
}

// whoami scripts `coder whoami -o json` as alice.
func (h *harness) whoami() *harness {
	h.fake.On(argvWhoami, execx.Reply{Stdout: aliceWhoami})
	return h
}

// list scripts `coder list -o json` with fixed rows.
func (h *harness) list(rows ...wsRow) *harness {
	h.fake.On(argvList, execx.Reply{Stdout: rowsJSON(rows...)})
	return h
}

// listAll scripts `coder list --all -o json` with fixed rows.
func (h *harness) listAll(rows ...wsRow) *harness {
	h.fake.On(argvListAll, execx.Reply{Stdout: rowsJSON(rows...)})
	return h
}

// live scripts `coder list -o json` to return the harness's live rows.
func (h *harness) live(rows ...wsRow) *harness {
	h.setRows(rows...)
	h.fake.On(argvList, execx.Reply{Stdout: liveRows})
	return h
}

func (h *harness) argvs() []string { return h.fake.Argvs() }

// claim writes a claim as it would exist on disk.
func (h *harness) claim(c claims.Claim) {
	h.t.Helper()
	_, err := h.store.Update(c.LeaseID, func(dst *claims.Claim, exists bool) error {
		id := dst.LeaseID
		*dst = c
		dst.LeaseID = id
		return nil
	})
	if err != nil {
		h.t.Fatalf("writing claim %s: %v", c.LeaseID, err)
	}
}

func (h *harness) allClaims() []claims.Claim {
	h.t.Helper()
	cs, problems, err := h.store.List()
	if err != nil || len(problems) != 0 {
		h.t.Fatalf("listing claims: %v %v", err, problems)
	}
	return cs
}

func (h *harness) getClaim(id string) *claims.Claim {
	h.t.Helper()
	c, err := h.store.Get(id)
	if err != nil {
		h.t.Fatalf("reading claim %s: %v", id, err)
	}
	return c
}

func (h *harness) eventsOf(kind string) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Event
	for _, e := range h.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// callsBefore is how many coder calls had been made when the first event
// of kind was emitted (-1: none).
func (h *harness) callsBefore(kind string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, e := range h.events {
		if e.Kind == kind {
			return h.callsAt[i]
		}
	}
	return -1
}

// coderClaim is a typical claim on a workspace of alice's.
func coderClaim(id, slug, ref, wsID string, kv ...string) claims.Claim {
	labels := map[string]string{
		"crabbox": "true", "created_by": "crabbox", "provider": "coder",
		"lease": id, "slug": slug, "keep": "false",
		"coder_workspace": bareName(ref), "coder_workspace_ref": ref,
		"coder_release_action": "stop",
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(labels, kv[i])
			continue
		}
		labels[kv[i]] = kv[i+1]
	}
	return claims.Claim{
		LeaseID: id, Slug: slug, Provider: "coder", CloudID: ref, WorkspaceID: wsID,
		CoderURL: coderURL, RepoRoot: "/src/app",
		ClaimedAt:          testNow.Add(-time.Hour).Format(time.RFC3339),
		LastUsedAt:         testNow.Add(-time.Minute).Format(time.RFC3339),
		IdleTimeoutSeconds: 1800, TargetOS: "linux", Labels: labels,
	}
}

// expired makes c eligible for cleanup (lastUsedAt 48h ago, idle 30m).
func expired(c claims.Claim) claims.Claim {
	c.LastUsedAt = testNow.Add(-48 * time.Hour).Format(time.RFC3339)
	c.IdleTimeoutSeconds = 1800
	return c
}

// ---- assertions -------------------------------------------------------------

// assertInventoryThen checks that the calls start with whoami and
// `list -o json` in either order (they run concurrently), followed by rest
// in order.
func assertInventoryThen(t *testing.T, got []string, rest ...string) {
	t.Helper()
	if len(got) < 2 {
		t.Fatalf("calls = %q; want whoami + list first, then %q", got, rest)
	}
	head := append([]string(nil), got[:2]...)
	sort.Strings(head)
	want := []string{argvList, argvWhoami}
	if !reflect.DeepEqual(head, want) {
		t.Errorf("first two calls = %q; want whoami and list in any order", got[:2])
	}
	if tail := got[2:]; !reflect.DeepEqual(tail, rest) && !(len(tail) == 0 && len(rest) == 0) {
		t.Errorf("calls after inventory:\n got  %q\n want %q", tail, rest)
	}
}

// assertNoMutation checks that no call other than version, whoami or list
// happened.
func assertNoMutation(t *testing.T, got []string) {
	t.Helper()
	for _, a := range got {
		switch a {
		case argvWhoami, argvList, argvListAll, "coder version":
		default:
			t.Errorf("unexpected mutating call %q (all calls %q)", a, got)
		}
	}
}

func countCalls(got []string, argv string) int {
	n := 0
	for _, a := range got {
		if a == argv {
			n++
		}
	}
	return n
}

func wantExit(t *testing.T, err error, code int, contains ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil; want exit %d containing %q", code, contains)
	}
	if got := exitcode.Code(err); got != code {
		t.Errorf("exit code = %d, want %d (err: %v)", got, code, err)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Errorf("error %q does not contain %q", err, c)
		}
	}
}

// wantRefused is wantExit(2) for crabbox's own refusals: the error is an
// *exitcode.RefusedError, so a caller can tell it from a coder CLI call
// that exited 2.
func wantRefused(t *testing.T, err error, contains ...string) {
	t.Helper()
	wantExit(t, err, exitcode.Usage, contains...)
	var ext *exitcode.ExternalError
	if !exitcode.IsRefused(err) || errors.As(err, &ext) {
		t.Errorf("error %q is not a plain refusal", err)
	}
}

func errFailure(msg string) error { return exitcode.New(exitcode.Failure, errors.New(msg)) }

// One provider, several flows: whoami is asked once, and a failing
// whoami or listing stops every flow before any mutation.
func TestProviderWhoamiOnceAcrossFlows(t *testing.T) {
	h := newHarness(t, nil)
	h.claim(expired(coderClaim(blueID, "blue-lobster", blueRef, "ws1", "keep", "true")))
	h.whoami().list(readyRow("alice", blueName, "ws1"))
	ctx := context.Background()
	if _, err := h.p.Resolve(ctx, ResolveRequest{Ident: blueID, Mode: StatusOnly}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.p.List(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, err := h.p.Cleanup(ctx, CleanupRequest{DryRun: false}); err != nil {
		t.Fatal(err)
	}
	got := h.argvs()
	if countCalls(got, argvWhoami) != 1 || countCalls(got, argvList) != 3 || len(got) != 4 {
		t.Errorf("calls = %q", got)
	}
}

func TestProviderInventoryFailures(t *testing.T) {
	notLoggedIn := execx.Reply{ExitCode: 1, Stderr: "You are not logged in. Try logging in using 'coder login <url>'."}
	listDown := execx.Reply{ExitCode: 1, Stderr: "inventory unavailable"}
	flows := map[string]func(p *Provider) error{
		"acquire": func(p *Provider) error {
			_, err := p.Acquire(context.Background(), AcquireRequest{RepoRoot: "/src/app"})
			return err
		},
		"resolve prepare": func(p *Provider) error {
			_, err := p.Resolve(context.Background(), ResolveRequest{Ident: blueID, Mode: Prepare, RepoRoot: "/src/app"})
			return err
		},
		"resolve release": func(p *Provider) error {
			_, err := p.Resolve(context.Background(), ResolveRequest{Ident: blueID, Mode: ReleaseOnly})
			return err
		},
		"cleanup": func(p *Provider) error {
			_, err := p.Cleanup(context.Background(), CleanupRequest{DryRun: false})
			return err
		},
		"list": func(p *Provider) error { _, err := p.List(context.Background(), false); return err },
	}
	for name, flow := range flows {
		for _, tc := range []struct {
			what           string
			whoami, list   execx.Reply
			wantSubstrings string
		}{
			{"whoami fails", notLoggedIn, execx.Reply{Stdout: rowsJSON(readyRow("alice", blueName, "ws1"))}, "not logged in"},
			{"list fails", execx.Reply{Stdout: aliceWhoami}, listDown, "inventory unavailable"},
		} {
			t.Run(name+"/"+tc.what, func(t *testing.T) {
				h := newHarness(t, nil)
				h.claim(expired(coderClaim(blueID, "blue-lobster", blueRef, "ws1")))
				before := h.getClaim(blueID)
				h.fake.On(argvWhoami, tc.whoami)
				h.fake.On(argvList, tc.list)
				wantExit(t, flow(h.p), 1, tc.wantSubstrings)
				assertInventoryThen(t, h.argvs())
				if after := h.getClaim(blueID); after == nil || after.Revision != before.Revision {
					t.Error("claim changed")
				}
				if len(h.allClaims()) != 1 {
					t.Errorf("claims = %+v", h.allClaims())
				}
			})
		}
	}
}

// The one-shot run flow: acquire, then release the returned lease.
func TestProviderAcquireThenRelease(t *testing.T) {
	for _, deleteOn := range []bool{false, true} {
		h := newHarness(t, func(s *Settings) { s.DeleteOnRelease = deleteOn })
		h.whoami().live()
		cn := h.onCreate(execx.Reply{}, true)
		h.fake.On("coder stop", execx.Reply{})
		h.fake.On("coder delete", execx.Reply{})
		l, err := h.p.Acquire(context.Background(), AcquireRequest{RepoRoot: "/src/app"})
		if err != nil {
			t.Fatal(err)
		}
		res, err := h.p.Release(context.Background(), l, ReleaseRequest{})
		if err != nil {
			t.Fatal(err)
		}
		verb := map[bool]string{false: "stop", true: "delete"}[deleteOn]
		if res.Action != verb || res.Skipped != "" {
			t.Errorf("result %+v", res)
		}
		got := h.argvs()
		if got[len(got)-1] != "coder "+verb+" --yes alice/"+cn.get() {
			t.Errorf("calls = %q", got)
		}
		if len(h.allClaims()) != 0 {
			t.Error("claim kept")
		}
	}
}
