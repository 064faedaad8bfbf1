package coder

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
)

const (
	blueID   = "cbx_aaaaaaaaaaaa"
	blueName = "crabbox-blue-lobster-abc123"
	blueRef  = "alice/" + blueName
)

func resolve(h *harness, ident string, mode Mode) (*Lease, error) {
	return h.p.Resolve(context.Background(), ResolveRequest{Ident: ident, Mode: mode})
}

func TestResolveClaimedByEveryIdentifier(t *testing.T) {
	for _, ident := range []string{blueID, "blue-lobster", "Blue_Lobster", blueName, blueRef, "ALICE/" + strings.ToUpper(blueName)} {
		t.Run(ident, func(t *testing.T) {
			h := newHarness(t, nil)
			h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1"))
			h.whoami().list(readyRow("alice", blueName, "ws1"), stoppedRow("alice", "personal", "ws2"))
			l, err := resolve(h, ident, StatusOnly)
			if err != nil {
				t.Fatalf("Resolve(%q): %v", ident, err)
			}
			if l.ID != blueID || l.Slug != "blue-lobster" || l.Ref != blueRef || l.Workspace != blueName || l.WorkspaceID != "ws1" {
				t.Errorf("lease = id %q slug %q ref %q ws %q/%q", l.ID, l.Slug, l.Ref, l.Workspace, l.WorkspaceID)
			}
			if l.Claim == nil || !l.Owned || l.State != StateReady || !l.Ready {
				t.Errorf("lease claim %v owned %v state %q ready %v", l.Claim, l.Owned, l.State, l.Ready)
			}
			for k, want := range map[string]string{"lease": blueID, "slug": "blue-lobster", "coder_workspace": blueName, "coder_workspace_ref": blueRef, "state": "ready", "work_root": "/home/coder/crabbox", "keep": "false"} {
				if l.Labels[k] != want {
					t.Errorf("label %s = %q, want %q", k, l.Labels[k], want)
				}
			}
			if !strings.Contains(l.Target.ProxyCommand, "'"+blueRef+"'") {
				t.Errorf("proxy command %q", l.Target.ProxyCommand)
			}
			if l.Target.Host != HostAlias(blueRef) || !strings.HasPrefix(l.Target.Host, "coder-alice-crabbox-blue-lobster-abc123-") ||
				l.Target.KnownHostsFile != KnownHostsFile(h.p.ConfigDir, blueRef, "ws1") || l.Target.User != "coder" {
				t.Errorf("target = %+v", l.Target)
			}
			got := h.argvs()
			assertInventoryThen(t, got)
		})
	}
}

func TestResolveUnclaimed(t *testing.T) {
	synthBlue := lease.SyntheticLeaseID("alice/crabbox-blue")
	cases := []struct {
		name     string
		rows     []wsRow
		ident    string
		wantID   string
		wantSlug string
	}{
		{"prefix-owned by slug", []wsRow{stoppedRow("alice", "crabbox-blue", "ws1")}, "blue", synthBlue, "blue"},
		{"prefix-owned by name", []wsRow{stoppedRow("alice", "crabbox-blue", "ws1")}, "crabbox-blue", synthBlue, "blue"},
		{"prefix-owned by ref", []wsRow{stoppedRow("alice", "crabbox-blue", "ws1")}, "alice/crabbox-blue", synthBlue, "blue"},
		{"prefix-owned by synthetic id", []wsRow{stoppedRow("alice", "crabbox-blue", "ws1")}, synthBlue, synthBlue, "blue"},
		{"marker labels by lease", []wsRow{stoppedRow("alice", "team-workspace", "ws1").withLabels(
			"crabbox", "true", "created_by", "crabbox", "provider", "coder", "lease", "cbx_label", "slug", "blue-lobster")}, "cbx_label", "cbx_label", "blue-lobster"},
		{"marker labels by slug", []wsRow{stoppedRow("alice", "team-workspace", "ws1").withLabels(
			"crabbox", "true", "lease", "cbx_label", "slug", "blue-lobster")}, "blue-lobster", "cbx_label", "blue-lobster"},
		{"marker only by name", []wsRow{stoppedRow("alice", "team-workspace", "ws1").withLabels("crabbox", "true")},
			"team-workspace", lease.SyntheticLeaseID("alice/team-workspace"), ""},
		{"legacy labels by lease", []wsRow{stoppedRow("alice", "team-workspace", "ws1").withLabels(
			"crabbox_lease_id", "cbx_legacy", "crabbox_slug", "legacy-lobster")}, "cbx_legacy", "cbx_legacy", "legacy-lobster"},
		{"legacy labels by slug", []wsRow{stoppedRow("alice", "team-workspace", "ws1").withLabels(
			"crabbox_lease_id", "cbx_legacy", "crabbox_slug", "legacy-lobster")}, "legacy-lobster", "cbx_legacy", "legacy-lobster"},
		{"unowned by exact name", []wsRow{stoppedRow("alice", "personal", "ws1")}, "personal", lease.SyntheticLeaseID("alice/personal"), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.whoami().list(tc.rows...)
			l, err := resolve(h, tc.ident, StatusOnly)
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tc.ident, err)
			}
			if l.ID != tc.wantID || l.Slug != tc.wantSlug {
				t.Errorf("id %q slug %q; want %q %q", l.ID, l.Slug, tc.wantID, tc.wantSlug)
			}
			if !leaseIDRe.MatchString(l.ID) && !strings.HasPrefix(tc.wantID, "cbx_l") {
				t.Errorf("synthetic ID %q is not canonical", l.ID)
			}
			if l.Claim != nil {
				t.Errorf("unclaimed workspace resolved with claim %+v", l.Claim)
			}
			if l.Labels["lease"] != tc.wantID {
				t.Errorf("lease label %q", l.Labels["lease"])
			}
			assertInventoryThen(t, h.argvs())
		})
	}
}

func TestResolveNotFoundAndAmbiguous(t *testing.T) {
	cases := []struct {
		name   string
		claims []claims.Claim
		own    []wsRow
		all    []wsRow // nil: --all must not be used
		ident  string
		msg    string
	}{
		{name: "empty normalized slug never matches", own: []wsRow{stoppedRow("alice", "team-workspace", "ws1").withLabels("crabbox", "true")},
			ident: "!!!", msg: "not found"},
		{name: "unknown", own: []wsRow{stoppedRow("alice", "crabbox-blue", "ws1")}, ident: "green", msg: "not found"},
		{name: "unowned rows are not found by slug", own: []wsRow{stoppedRow("alice", "personal", "ws1")}, ident: "person", msg: "not found"},
		{name: "two claims match bare name (via --all)",
			claims: []claims.Claim{
				coderClaim("cbx_000000000001", "one", "alice/shared", "wsa"),
				coderClaim("cbx_000000000002", "two", "bob/shared", "wsb"),
			},
			own:   []wsRow{readyRow("alice", "shared", "wsa")},
			all:   []wsRow{readyRow("alice", "shared", "wsa"), readyRow("bob", "shared", "wsb")},
			ident: "shared", msg: "ambiguous"},
		{name: "bare ident, two owners, no claim",
			own: []wsRow{readyRow("alice", "shared", "wsa"), readyRow("bob", "shared", "wsb")}, ident: "shared", msg: "ambiguous"},
		{name: "bare claim without workspace ID, two owners",
			claims: []claims.Claim{coderClaim("cbx_000000000003", "shared", "shared", "")},
			own:    []wsRow{readyRow("alice", "shared", "wsa"), readyRow("bob", "shared", "wsb")},
			ident:  "cbx_000000000003", msg: "ambiguous"},
		{name: "two owned rows share a slug",
			own:   []wsRow{stoppedRow("alice", "crabbox-x", "ws1").withLabels("crabbox", "true", "slug", "blue"), stoppedRow("alice", "crabbox-blue", "ws2")},
			ident: "blue", msg: "ambiguous"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			for _, c := range tc.claims {
				h.claim(c)
			}
			h.whoami().list(tc.own...)
			if tc.all != nil {
				h.listAll(tc.all...)
			}
			_, err := resolve(h, tc.ident, StatusOnly)
			wantExit(t, err, exitcode.NotFound, tc.msg)
			got := h.argvs()
			if tc.all != nil {
				assertInventoryThen(t, got, argvListAll)
			} else {
				assertInventoryThen(t, got)
			}
		})
	}

	h := newHarness(t, nil)
	_, err := resolve(h, "  ", StatusOnly)
	wantExit(t, err, exitcode.Usage, "requires a lease id")
	if len(h.argvs()) != 0 {
		t.Errorf("calls for an empty identifier: %q", h.argvs())
	}
}

func TestResolveListScope(t *testing.T) {
	cases := []struct {
		name    string
		claims  []claims.Claim
		own     []wsRow
		all     []wsRow
		ident   string
		wantAll bool
		wantID  string
		wantRef string
	}{
		{name: "foreign-owner claim by lease ID forces --all",
			claims: []claims.Claim{coderClaim("cbx_0000000000b0", "bobs", "bob/shared", "wsb")},
			own:    []wsRow{readyRow("alice", "shared", "wsa")},
			all:    []wsRow{readyRow("alice", "shared", "wsa"), readyRow("bob", "shared", "wsb")},
			ident:  "cbx_0000000000b0", wantAll: true, wantID: "cbx_0000000000b0", wantRef: "bob/shared"},
		{name: "foreign-owner claim by bare name forces --all and disambiguates",
			claims: []claims.Claim{coderClaim("cbx_0000000000b0", "bobs", "bob/shared", "wsb")},
			own:    []wsRow{readyRow("alice", "shared", "wsa")},
			all:    []wsRow{readyRow("alice", "shared", "wsa"), readyRow("bob", "shared", "wsb")},
			ident:  "shared", wantAll: true, wantID: "cbx_0000000000b0", wantRef: "bob/shared"},
		{name: "foreign owner in the identifier forces --all",
			own:   []wsRow{readyRow("alice", "shared", "wsa")},
			all:   []wsRow{readyRow("alice", "shared", "wsa"), readyRow("bob", "shared", "wsb")},
			ident: "bob/shared", wantAll: true, wantID: lease.SyntheticLeaseID("bob/shared"), wantRef: "bob/shared"},
		{name: "same-owner claim does not",
			claims: []claims.Claim{coderClaim("cbx_0000000000a0", "alices", "alice/shared", "wsa")},
			own:    []wsRow{readyRow("alice", "shared", "wsa")},
			ident:  "shared", wantID: "cbx_0000000000a0", wantRef: "alice/shared"},
		{name: "own identifier does not",
			own:   []wsRow{readyRow("alice", "shared", "wsa")},
			ident: "alice/shared", wantID: lease.SyntheticLeaseID("alice/shared"), wantRef: "alice/shared"},
		{name: "unrelated foreign claim does not",
			claims: []claims.Claim{coderClaim("cbx_0000000000b0", "bobs", "bob/other", "wsb")},
			own:    []wsRow{stoppedRow("alice", "crabbox-blue", "ws1")},
			ident:  "blue", wantID: lease.SyntheticLeaseID("alice/crabbox-blue"), wantRef: "alice/crabbox-blue"},
		{name: "claim by slug picks its owner's row",
			claims: []claims.Claim{coderClaim("cbx_0000000000a0", "shared", "alice/shared", "wsa")},
			own:    []wsRow{readyRow("alice", "shared", "wsa")},
			ident:  "shared", wantID: "cbx_0000000000a0", wantRef: "alice/shared"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			for _, c := range tc.claims {
				h.claim(c)
			}
			h.whoami().list(tc.own...)
			if tc.all != nil {
				h.listAll(tc.all...)
			}
			l, err := resolve(h, tc.ident, StatusOnly)
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if l.ID != tc.wantID || l.Ref != tc.wantRef || l.Labels["coder_workspace_ref"] != tc.wantRef {
				t.Errorf("lease id %q ref %q; want %q %q", l.ID, l.Ref, tc.wantID, tc.wantRef)
			}
			got := h.argvs()
			if tc.wantAll {
				assertInventoryThen(t, got, argvListAll)
			} else {
				assertInventoryThen(t, got)
			}
			if countCalls(got, argvWhoami) != 1 {
				t.Errorf("whoami asked %d times", countCalls(got, argvWhoami))
			}
		})
	}
}

func TestResolveIgnoresClaimOfAnotherDeployment(t *testing.T) {
	c := coderClaim(blueID, "blue-lobster", blueRef, "ws1")
	c.CoderURL = "https://other.example.com/"
	for _, tc := range []struct {
		ident   string
		wantErr bool
	}{{blueID, true}, {blueName, false}} {
		t.Run(tc.ident, func(t *testing.T) {
			h := newHarness(t, nil)
			h.claim(c)
			h.whoami().list(readyRow("alice", blueName, "ws1"))
			l, err := resolve(h, tc.ident, StatusOnly)
			if tc.wantErr {
				wantExit(t, err, exitcode.NotFound, "not found")
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if l.Claim != nil || l.ID == blueID || l.ID != lease.SyntheticLeaseID(blueRef) {
					t.Errorf("claim of another deployment was used: id %q claim %v", l.ID, l.Claim)
				}
			}
			warns := h.eventsOf(EventWarning)
			if len(warns) != 1 {
				t.Fatalf("warnings = %+v, want exactly one", warns)
			}
			if !strings.Contains(warns[0].Message, blueID) || !strings.Contains(warns[0].Message, "other.example.com") {
				t.Errorf("warning %q", warns[0].Message)
			}
			assertNoMutation(t, h.argvs())
		})
	}

	// The same URL with a trailing slash or other case is the same deployment.
	h := newHarness(t, nil)
	c2 := coderClaim(blueID, "blue-lobster", blueRef, "ws1")
	c2.CoderURL = "HTTPS://coder.example.com/"
	h.claim(c2)
	h.whoami().list(readyRow("alice", blueName, "ws1"))
	l, err := resolve(h, blueID, StatusOnly)
	if err != nil || l.Claim == nil || len(h.eventsOf(EventWarning)) != 0 {
		t.Fatalf("same deployment: %v %+v %+v", err, l, h.eventsOf(EventWarning))
	}
}

func TestResolveStatusOnlyNeverMutates(t *testing.T) {
	cases := []struct {
		name      string
		row       wsRow
		claimed   bool
		wantState string
		wantReady bool
	}{
		{"stopped claimed", stoppedRow("alice", blueName, "ws1"), true, StateStopped, false},
		{"stopped unclaimed", stoppedRow("alice", blueName, "ws1"), false, StateStopped, false},
		{"running, agent connecting", wsRow{ID: "ws1", Owner: "alice", Name: blueName, Status: "running", Transition: "start", Agent: "connecting"}, true, StateRunning, false},
		{"starting", wsRow{ID: "ws1", Owner: "alice", Name: blueName, Status: "pending", Transition: "start"}, true, StateStarting, false},
		{"ready", readyRow("alice", blueName, "ws1"), true, StateReady, true},
		{"failed", wsRow{ID: "ws1", Owner: "alice", Name: blueName, Status: "failed", Transition: "start"}, true, "failed", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			if tc.claimed {
				h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1"))
			}
			h.whoami().list(tc.row)
			before := h.allClaims()
			l, err := resolve(h, blueName, StatusOnly)
			if err != nil {
				t.Fatal(err)
			}
			if l.State != tc.wantState || l.Ready != tc.wantReady || l.Labels["state"] != tc.wantState {
				t.Errorf("state %q ready %v label %q; want %q %v", l.State, l.Ready, l.Labels["state"], tc.wantState, tc.wantReady)
			}
			assertInventoryThen(t, h.argvs())
			after := h.allClaims()
			if len(before) != len(after) || (len(after) == 1 && after[0].Revision != before[0].Revision) {
				t.Error("status-only resolve rewrote a claim")
			}
		})
	}
}

func TestResolveKeepsClaimLabels(t *testing.T) {
	h := newHarness(t, nil)
	c := coderClaim(blueID, "blue-lobster", blueRef, "ws1", "keep", "TRUE", "created_at", "1787217164",
		"last_touched_at", "1787217200", "idle_timeout", "1800", "idle_timeout_secs", "1800", "expires_at", "1787218964", "state", "ready")
	h.claim(c)
	h.whoami().list(stoppedRow("alice", blueName, "ws1").withLabels("keep", "false", "team", "x"))
	l, err := resolve(h, "blue-lobster", StatusOnly)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"created_at": "1787217164", "last_touched_at": "1787217200", "idle_timeout": "1800",
		"idle_timeout_secs": "1800", "expires_at": "1787218964", "state": "stopped", "keep": "true", "team": "x"} {
		if l.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, l.Labels[k], want)
		}
	}
	if !l.Keep || l.CreatedAt.Unix() != 1787217164 || l.ExpiresAt.Unix() != 1787218964 || l.IdleTimeout.Seconds() != 1800 {
		t.Errorf("keep %v created %v expires %v idle %v", l.Keep, l.CreatedAt, l.ExpiresAt, l.IdleTimeout)
	}
	if !l.LastTouchedAt.Equal(testNow.Add(-60e9)) {
		t.Errorf("last touched %v", l.LastTouchedAt)
	}
}

func TestResolveClaimWithoutWorkspaceLabels(t *testing.T) {
	// An old claim that recorded neither ref nor workspace labels still
	// finds its workspace by the name derived from prefix, slug and lease.
	name, err := UniqueWorkspaceName("crabbox-", "blue", blueID)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(s *Settings) { s.Prefix = "crabbox-" })
	c := coderClaim(blueID, "blue", "", "", "coder_workspace", "", "coder_workspace_ref", "")
	c.CloudID = ""
	h.claim(c)
	h.whoami().list(stoppedRow("alice", name, "ws1"))
	for _, ident := range []string{blueID, name} {
		l, err := resolve(h, ident, StatusOnly)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", ident, err)
		}
		if l.ID != blueID || l.Ref != "alice/"+name {
			t.Errorf("Resolve(%q) = %q %q", ident, l.ID, l.Ref)
		}
	}
}

// ---- Prepare -------------------------------------------------------------

func TestResolvePrepareStartsStopped(t *testing.T) {
	cases := []struct {
		name        string
		claimed     bool
		deleteOn    bool
		claimAction string
		wantID      string
		wantSlug    string
		wantAction  string
	}{
		{name: "claimed", claimed: true, wantID: blueID, wantSlug: "blue-lobster", wantAction: "stop"},
		{name: "claimed keeps its persisted action", claimed: true, deleteOn: true, wantID: blueID, wantSlug: "blue-lobster", wantAction: "stop"},
		{name: "adopted, stop policy", wantID: lease.SyntheticLeaseID(blueRef), wantSlug: "blue-lobster-abc123", wantAction: "stop"},
		{name: "adopted, delete policy", deleteOn: true, wantID: lease.SyntheticLeaseID(blueRef), wantSlug: "blue-lobster-abc123", wantAction: "delete"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(s *Settings) { s.DeleteOnRelease = tc.deleteOn })
			if tc.claimed {
				c := coderClaim(blueID, "blue-lobster", blueRef, "ws1")
				c.LastUsedAt = testNow.Add(-72 * 3600e9).Format("2006-01-02T15:04:05Z")
				h.claim(c)
			}
			h.whoami().live(stoppedRow("alice", blueName, "ws1"))
			h.fake.On("coder start", execx.Reply{Do: func(execx.Call) {
				h.setRows(readyRow("alice", blueName, "ws1"))
			}})
			var readyCalls []*Lease
			l, err := h.p.Resolve(context.Background(), ResolveRequest{Ident: blueName, Mode: Prepare, RepoRoot: "/src/app",
				Ready: func(_ context.Context, l *Lease) error {
					readyCalls = append(readyCalls, l)
					return nil
				}})
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			assertInventoryThen(t, h.argvs(), "coder start --yes "+blueRef, argvList)
			if st := h.eventsOf(EventStarting); len(st) != 1 || st[0].Lease.Ref != blueRef {
				t.Errorf("starting events = %+v", st)
			} else if n := h.callsBefore(EventStarting); n != 2 {
				t.Errorf("starting event after %d calls, want 2 (before start)", n)
			}
			if len(readyCalls) != 1 || readyCalls[0].ID != tc.wantID || !strings.Contains(readyCalls[0].Target.ProxyCommand, "'"+blueRef+"'") {
				t.Fatalf("Ready calls %+v", readyCalls)
			}
			if l.ID != tc.wantID || l.Slug != tc.wantSlug || l.State != StateReady || !l.Ready || l.Labels["state"] != StateReady {
				t.Errorf("lease id %q slug %q state %q ready %v label %q", l.ID, l.Slug, l.State, l.Ready, l.Labels["state"])
			}
			c := h.getClaim(tc.wantID)
			if c == nil {
				t.Fatalf("no claim %s; claims %+v", tc.wantID, h.allClaims())
			}
			if c.RepoRoot != "/src/app" || c.CloudID != blueRef || c.WorkspaceID != "ws1" || c.CoderURL != coderURL ||
				c.Provider != "coder" || c.Slug != tc.wantSlug || c.LastUsedAt != testNow.Format("2006-01-02T15:04:05Z") {
				t.Errorf("claim = %+v", c)
			}
			if c.Labels["coder_release_action"] != tc.wantAction || c.Labels["coder_workspace_ref"] != blueRef || c.Labels["lease"] != tc.wantID {
				t.Errorf("claim labels = %v", c.Labels)
			}
			if !tc.claimed && c.IdleTimeoutSeconds != 1800 {
				t.Errorf("adopted claim idle = %d", c.IdleTimeoutSeconds)
			}
			if l.Claim == nil || l.Claim.WorkspaceID != "ws1" {
				t.Errorf("lease claim %+v", l.Claim)
			}
			if len(h.allClaims()) != 1 {
				t.Errorf("claims = %+v", h.allClaims())
			}
		})
	}
}

func TestResolvePrepareRunning(t *testing.T) {
	// Ready: no start, no relist.
	h := newHarness(t, nil)
	h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1"))
	h.whoami().list(readyRow("alice", blueName, "ws1"))
	readyCalled := 0
	l, err := h.p.Resolve(context.Background(), ResolveRequest{Ident: blueID, Mode: Prepare, RepoRoot: "/src/app",
		Ready: func(context.Context, *Lease) error { readyCalled++; return nil }})
	if err != nil || readyCalled != 1 || !l.Ready {
		t.Fatalf("err %v ready calls %d lease %+v", err, readyCalled, l)
	}
	assertInventoryThen(t, h.argvs())

	// Running but agent still connecting: no start, no relist, then wait.
	h = newHarness(t, nil)
	h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1"))
	h.whoami().list(wsRow{ID: "ws1", Owner: "alice", Name: blueName, Status: "running", Transition: "start", Agent: "connecting"})
	l, err = h.p.Resolve(context.Background(), ResolveRequest{Ident: blueID, Mode: Prepare, RepoRoot: "/src/app",
		Ready: func(context.Context, *Lease) error { return nil }})
	if err != nil || l.State != StateReady || l.Labels["state"] != StateReady {
		t.Fatalf("err %v lease %+v", err, l)
	}
	assertInventoryThen(t, h.argvs())

	// Ready fails: the error surfaces and the claim is not refreshed.
	h = newHarness(t, nil)
	h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1"))
	before := h.getClaim(blueID)
	h.whoami().list(readyRow("alice", blueName, "ws1"))
	_, err = h.p.Resolve(context.Background(), ResolveRequest{Ident: blueID, Mode: Prepare, RepoRoot: "/src/app",
		Ready: func(context.Context, *Lease) error { return exitcode.Errorf(exitcode.Transport, "ssh down") }})
	wantExit(t, err, exitcode.Transport, "ssh down")
	if after := h.getClaim(blueID); after.Revision != before.Revision {
		t.Error("claim refreshed although the workspace never answered")
	}
}

func TestResolvePrepareRepoConflict(t *testing.T) {
	for _, reclaim := range []bool{false, true} {
		t.Run(map[bool]string{false: "refused", true: "reclaim"}[reclaim], func(t *testing.T) {
			h := newHarness(t, nil)
			h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1"))
			h.whoami().live(stoppedRow("alice", blueName, "ws1"))
			h.fake.On("coder start", execx.Reply{Do: func(execx.Call) { h.setRows(readyRow("alice", blueName, "ws1")) }})
			l, err := h.p.Resolve(context.Background(), ResolveRequest{Ident: "blue-lobster", Mode: Prepare, RepoRoot: "/src/other", Reclaim: reclaim,
				Ready: func(context.Context, *Lease) error { return nil }})
			if !reclaim {
				wantRefused(t, err, "claimed by repo /src/app", "--reclaim")
				assertInventoryThen(t, h.argvs())
				if c := h.getClaim(blueID); c.RepoRoot != "/src/app" {
					t.Errorf("claim repo changed to %q", c.RepoRoot)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertInventoryThen(t, h.argvs(), "coder start --yes "+blueRef, argvList)
			if c := h.getClaim(blueID); c.RepoRoot != "/src/other" || l.Claim.RepoRoot != "/src/other" {
				t.Errorf("claim repo = %q", c.RepoRoot)
			}
		})
	}

	// The same repo spelled with a trailing slash or "." is not a conflict.
	h := newHarness(t, nil)
	h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1"))
	h.whoami().list(readyRow("alice", blueName, "ws1"))
	if _, err := h.p.Resolve(context.Background(), ResolveRequest{Ident: blueID, Mode: Prepare, RepoRoot: "/src/app/."}); err != nil {
		t.Fatalf("same repo refused: %v", err)
	}
}

func TestResolvePrepareCannotStart(t *testing.T) {
	h := newHarness(t, nil)
	h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1"))
	h.whoami().list(wsRow{ID: "ws1", Owner: "alice", Name: blueName, Status: "deleting", Transition: "delete"})
	_, err := h.p.Resolve(context.Background(), ResolveRequest{Ident: blueID, Mode: Prepare, RepoRoot: "/src/app"})
	wantExit(t, err, exitcode.NotFound, "cannot be started")
	assertInventoryThen(t, h.argvs())

	h = newHarness(t, nil)
	h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1"))
	h.whoami().list(stoppedRow("alice", blueName, "ws1"))
	h.fake.On("coder start", execx.Reply{ExitCode: 1, Stderr: "quota exceeded"})
	_, err = h.p.Resolve(context.Background(), ResolveRequest{Ident: blueID, Mode: Prepare, RepoRoot: "/src/app"})
	wantExit(t, err, 1, "quota exceeded")
	assertInventoryThen(t, h.argvs(), "coder start --yes "+blueRef)
}

func TestResolveClaimSurvivesPrefixChange(t *testing.T) {
	for _, ident := range []string{"cbx_0000000000c1", "crabbox-blue", "alice/crabbox-blue", "blue"} {
		h := newHarness(t, func(s *Settings) { s.Prefix = "other-" })
		h.claim(coderClaim("cbx_0000000000c1", "blue", "alice/crabbox-blue", "ws1"))
		h.whoami().list(stoppedRow("alice", "crabbox-blue", "ws1"))
		l, err := resolve(h, ident, StatusOnly)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", ident, err)
		}
		if l.ID != "cbx_0000000000c1" || l.Claim == nil || l.Slug != "blue" {
			t.Errorf("Resolve(%q) = %q %q claim %v", ident, l.ID, l.Slug, l.Claim != nil)
		}
	}
}

// A build Coder is already running (started or stopped outside crabbox,
// autostart/autostop) is waited for: crabbox issues one `coder start`, and
// only once the workspace is stopped; never one for a start in progress.
// "A workspace build is already active" is waited for, not reported.
func TestResolvePrepareWaitsForBuildInProgress(t *testing.T) {
	oldPoll := buildPollInterval
	buildPollInterval = time.Millisecond
	t.Cleanup(func() { buildPollInterval = oldPoll })
	row := func(status, transition, agent string) wsRow {
		return wsRow{ID: "ws1", Owner: "alice", Name: blueName, Status: status, Transition: transition, Agent: agent}
	}
	active := execx.Reply{ExitCode: 1, Stderr: "create workspace build: unexpected status code 409: A workspace build is already active."}
	cases := []struct {
		name       string
		lists      []wsRow       // the n-th `coder list` (the last repeats)
		starts     []execx.Reply // replies to `coder start`, in order
		afterStart [][]wsRow     // lists after the n-th start (nil: ready)
		wantStarts int
		wantWaits  int
	}{
		{name: "stopping, then stopped: one start after the stop",
			lists:  []wsRow{row("stopping", "stop", ""), row("stopping", "stop", ""), row("stopped", "stop", "")},
			starts: []execx.Reply{{}}, wantStarts: 1, wantWaits: 1},
		{name: "pending stop build",
			lists:  []wsRow{row("pending", "stop", ""), row("stopping", "stop", ""), row("stopped", "stop", "")},
			starts: []execx.Reply{{}}, wantStarts: 1, wantWaits: 2},
		{name: "start in progress: no start",
			lists:     []wsRow{row("pending", "start", ""), row("starting", "start", ""), row("running", "start", "connecting")},
			wantWaits: 2},
		{name: "start answers build already active (a start began): wait, no second start",
			lists:      []wsRow{row("stopped", "stop", "")},
			starts:     []execx.Reply{active},
			afterStart: [][]wsRow{{row("starting", "start", ""), row("running", "start", "ready")}},
			wantStarts: 1, wantWaits: 1},
		{name: "start answers build already active (a stop was running): start once it stopped",
			lists:      []wsRow{row("stopped", "stop", "")},
			starts:     []execx.Reply{active, {}},
			afterStart: [][]wsRow{{row("stopping", "stop", ""), row("stopped", "stop", "")}, nil},
			wantStarts: 2, wantWaits: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1"))
			h.whoami()
			var mu sync.Mutex
			lists, starts := 0, 0
			var seq []wsRow = tc.lists
			pick := func() {
				mu.Lock()
				defer mu.Unlock()
				if seq == nil {
					h.setRows(readyRow("alice", blueName, "ws1"))
					return
				}
				h.setRows(seq[min(lists, len(seq)-1)])
				lists++
			}
			h.fake.On(argvList, execx.Reply{Stdout: liveRows, Do: func(execx.Call) { pick() }})
			for i, r := range tc.starts {
				i, r := i, r
				r.Do = func(execx.Call) {
					mu.Lock()
					defer mu.Unlock()
					starts++
					seq, lists = nil, 0
					if i < len(tc.afterStart) && tc.afterStart[i] != nil {
						seq = tc.afterStart[i]
					}
				}
				h.fake.On("coder start", r)
			}
			readyCalls := 0
			l, err := h.p.Resolve(context.Background(), ResolveRequest{Ident: blueID, Mode: Prepare, RepoRoot: "/src/app",
				Ready: func(context.Context, *Lease) error { readyCalls++; return nil }})
			if err != nil {
				t.Fatalf("Resolve: %v\ncalls %q", err, h.argvs())
			}
			if got := countCalls(h.argvs(), "coder start --yes "+blueRef); got != tc.wantStarts || starts != tc.wantStarts {
				t.Errorf("coder start calls = %d, want %d: %q", got, tc.wantStarts, h.argvs())
			}
			if got := len(h.eventsOf(EventWaiting)); got != tc.wantWaits {
				t.Errorf("waiting events = %d, want %d", got, tc.wantWaits)
			}
			if len(h.eventsOf(EventStarting)) != tc.wantStarts {
				t.Errorf("starting events = %+v", h.eventsOf(EventStarting))
			}
			if readyCalls != 1 || !l.Ready || l.State != StateReady {
				t.Errorf("ready calls %d, lease %+v", readyCalls, l)
			}
		})
	}
}

// A build that never finishes: bounded wait, exit 5, no start.
func TestResolvePrepareBuildWaitTimesOut(t *testing.T) {
	oldPoll, oldWait := buildPollInterval, buildWaitTimeout
	buildPollInterval, buildWaitTimeout = time.Millisecond, 30*time.Millisecond
	t.Cleanup(func() { buildPollInterval, buildWaitTimeout = oldPoll, oldWait })
	h := newHarness(t, nil)
	h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1"))
	h.whoami().list(wsRow{ID: "ws1", Owner: "alice", Name: blueName, Status: "stopping", Transition: "stop"})
	_, err := h.p.Resolve(context.Background(), ResolveRequest{Ident: blueID, Mode: Prepare, RepoRoot: "/src/app",
		Ready: func(context.Context, *Lease) error { return nil }})
	wantExit(t, err, exitcode.NotFound, "timed out", "waiting for the build of coder workspace "+blueRef, "coder list")
	if countCalls(h.argvs(), "coder start --yes "+blueRef) != 0 {
		t.Errorf("started while a build was running: %q", h.argvs())
	}
	if d := h.eventsOf(EventDone); len(d) == 0 || d[len(d)-1].Err == nil {
		t.Errorf("the wait did not end with a failed done event: %+v", d)
	}
}

// A claimed workspace deleted and recreated under the same name is never
// used for the old lease, and the refusal says so (positive control: the
// plain missing case keeps its own message).
func TestResolveRecreatedWorkspaceRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		rows []wsRow
		want []string
	}{
		{"recreated under the same name", []wsRow{readyRow("alice", blueName, "ws-new")},
			[]string{"was deleted", "ID ws-new, the lease's was ws-old", "crabbox stop " + blueID}},
		{"simply gone", nil, []string{"was not found in coder list", "crabbox stop " + blueID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws-old"))
			h.whoami().list(tc.rows...)
			_, err := resolve(h, "blue-lobster", Prepare)
			wantExit(t, err, exitcode.NotFound, tc.want...)
			if hasCall(h.argvs(), "coder start") || len(callsOf(h, "ssh")) != 0 {
				t.Errorf("the recreated workspace was touched: %q", h.argvs())
			}
		})
	}
}
