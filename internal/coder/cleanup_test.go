package coder

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/lease"
)

// decisionKey is a CleanupDecision without Done, for table comparison.
type decisionKey struct{ Ref, LeaseID, Action, Reason string }

func keys(ds []CleanupDecision) []decisionKey {
	out := []decisionKey{}
	for _, d := range ds {
		if d.Workspace != bareName(d.Ref) {
			panic("decision workspace/ref mismatch: " + d.Workspace + " " + d.Ref)
		}
		out = append(out, decisionKey{d.Ref, d.LeaseID, d.Action, d.Reason})
	}
	return out
}

func TestCleanup(t *testing.T) {
	const blue = "crabbox-blue"
	blueClaim := func(kv ...string) claims.Claim {
		return coderClaim("cbx_0000000000c1", "blue", "alice/"+blue, "ws1", kv...)
	}
	cases := []struct {
		name     string
		deleteOn bool
		claims   []claims.Claim
		own      []wsRow
		all      []wsRow // non-nil: --all expected
		want     []decisionKey
		wantMut  []string // mutations in order (not dry-run)
		keepIDs  []string // claims that must survive a real run
	}{
		{name: "unclaimed rows are never mutated",
			own:  []wsRow{stoppedRow("alice", blue, "ws1"), readyRow("alice", "personal", "ws2"), readyRow("alice", "crabbox-green", "ws3")},
			want: []decisionKey{{"alice/" + blue, "", "", "missing claim"}, {"alice/crabbox-green", "", "", "missing claim"}}},
		{name: "unowned label variants are skipped silently",
			own: []wsRow{
				stoppedRow("alice", "team-workspace", "ws1").withLabels("provider", "coder"),
				stoppedRow("alice", "team-workspace2", "ws2").withLabels("provider", "coder", "slug", "blue"),
				stoppedRow("alice", "team-workspace3", "ws3").withLabels("slug", "blue"),
			},
			want: []decisionKey{}},
		{name: "claim whose workspace never appeared is kept while active",
			claims: []claims.Claim{blueClaim()},
			own:    []wsRow{readyRow("alice", "personal", "ws2")},
			want:   []decisionKey{{"alice/" + blue, "cbx_0000000000c1", "", "workspace missing; claim active"}}, keepIDs: []string{"cbx_0000000000c1"}},
		{name: "expired claim whose workspace is gone is forgotten without a coder call",
			claims: []claims.Claim{expired(blueClaim())},
			own:    []wsRow{readyRow("alice", "personal", "ws2")},
			want:   []decisionKey{{"alice/" + blue, "cbx_0000000000c1", "forget", "workspace missing"}}},
		{name: "fresh claim is active",
			claims: []claims.Claim{blueClaim()},
			own:    []wsRow{stoppedRow("alice", blue, "ws1"), readyRow("alice", "personal", "ws2")},
			want:   []decisionKey{{"alice/" + blue, "cbx_0000000000c1", "", "claim active"}}, keepIDs: []string{"cbx_0000000000c1"}},
		{name: "fresh claim wins over delete config",
			deleteOn: true, claims: []claims.Claim{blueClaim()},
			own:  []wsRow{stoppedRow("alice", blue, "ws1")},
			want: []decisionKey{{"alice/" + blue, "cbx_0000000000c1", "", "claim active"}}, keepIDs: []string{"cbx_0000000000c1"}},
		{name: "claim without idle timeout is active forever",
			claims: []claims.Claim{func() claims.Claim {
				c := expired(blueClaim())
				c.IdleTimeoutSeconds = 0
				return c
			}()},
			own:  []wsRow{stoppedRow("alice", blue, "ws1")},
			want: []decisionKey{{"alice/" + blue, "cbx_0000000000c1", "", "claim active"}}, keepIDs: []string{"cbx_0000000000c1"}},
		{name: "expired claim stops",
			claims:  []claims.Claim{expired(blueClaim())},
			own:     []wsRow{readyRow("alice", blue, "ws1"), readyRow("alice", "personal", "ws2")},
			want:    []decisionKey{{"alice/" + blue, "cbx_0000000000c1", "stop", "claim expired"}},
			wantMut: []string{"coder stop --yes alice/" + blue}},
		{name: "expired claim with delete action deletes under stop config",
			claims:  []claims.Claim{expired(blueClaim("coder_release_action", "delete"))},
			own:     []wsRow{stoppedRow("alice", blue, "ws1")},
			want:    []decisionKey{{"alice/" + blue, "cbx_0000000000c1", "delete", "claim expired"}},
			wantMut: []string{"coder delete --yes alice/" + blue}},
		{name: "expired claim with stop action stops under delete config",
			deleteOn: true, claims: []claims.Claim{expired(blueClaim("coder_release_action", "stop"))},
			own:     []wsRow{stoppedRow("alice", blue, "ws1")},
			want:    []decisionKey{{"alice/" + blue, "cbx_0000000000c1", "stop", "claim expired"}},
			wantMut: []string{"coder stop --yes alice/" + blue}},
		{name: "expired claim without action label stops under delete config",
			deleteOn: true, claims: []claims.Claim{expired(blueClaim("coder_release_action", ""))},
			own:     []wsRow{stoppedRow("alice", blue, "ws1")},
			want:    []decisionKey{{"alice/" + blue, "cbx_0000000000c1", "stop", "claim expired"}},
			wantMut: []string{"coder stop --yes alice/" + blue}},
		{name: "row label cannot turn a stop lease into a delete",
			claims:  []claims.Claim{expired(blueClaim("coder_release_action", ""))},
			own:     []wsRow{stoppedRow("alice", blue, "ws1").withLabels("coder_release_action", "delete")},
			want:    []decisionKey{{"alice/" + blue, "cbx_0000000000c1", "stop", "claim expired"}},
			wantMut: []string{"coder stop --yes alice/" + blue}},
		{name: "kept claim is skipped",
			claims: []claims.Claim{expired(blueClaim("keep", "true"))},
			own:    []wsRow{stoppedRow("alice", blue, "ws1")},
			want:   []decisionKey{{"alice/" + blue, "cbx_0000000000c1", "", "keep=true"}}, keepIDs: []string{"cbx_0000000000c1"}},
		{name: "recreated workspace is not bound to the old claim",
			claims: []claims.Claim{expired(blueClaim())},
			own:    []wsRow{stoppedRow("alice", blue, "ws-new")},
			want:   []decisionKey{{"alice/" + blue, "", "", "missing claim"}}, keepIDs: []string{"cbx_0000000000c1"}},
		{name: "claim of another deployment is ignored",
			claims: []claims.Claim{func() claims.Claim { c := expired(blueClaim()); c.CoderURL = "https://other.example.com"; return c }()},
			own:    []wsRow{stoppedRow("alice", blue, "ws1")},
			want:   []decisionKey{{"alice/" + blue, "", "", "missing claim"}}, keepIDs: []string{"cbx_0000000000c1"}},
		{name: "foreign-owner claim uses --all",
			claims:  []claims.Claim{expired(coderClaim("cbx_0000000000b0", "bobs", "bob/shared", "wsb"))},
			own:     []wsRow{readyRow("alice", "shared", "wsa")},
			all:     []wsRow{readyRow("alice", "shared", "wsa"), readyRow("bob", "shared", "wsb")},
			want:    []decisionKey{{"bob/shared", "cbx_0000000000b0", "stop", "claim expired"}},
			wantMut: []string{"coder stop --yes bob/shared"}},
		{name: "bare claim never binds to ambiguous owner rows",
			claims: []claims.Claim{
				expired(coderClaim("cbx_0000000000a1", "alices", "alice/shared", "wsa")),
				expired(coderClaim("cbx_0000000000a0", "bare", "shared", "")),
				coderClaim("cbx_0000000000b9", "bobs-other", "bob/other", "wso", "keep", "true"),
			},
			own:     []wsRow{readyRow("alice", "shared", "wsa")},
			all:     []wsRow{readyRow("alice", "shared", "wsa"), readyRow("bob", "shared", "wsb"), readyRow("bob", "other", "wso")},
			want:    []decisionKey{{"alice/shared", "cbx_0000000000a1", "stop", "claim expired"}, {"bob/other", "cbx_0000000000b9", "", "keep=true"}},
			wantMut: []string{"coder stop --yes alice/shared"},
			keepIDs: []string{"cbx_0000000000a0", "cbx_0000000000b9"}},
		{name: "bare claim binds to a unique row",
			claims: []claims.Claim{
				expired(coderClaim("cbx_0000000000a0", "bare", "shared", "")),
				expired(coderClaim("cbx_0000000000a2", "other", "alice/other", "wso", "keep", "true")),
			},
			own:     []wsRow{readyRow("alice", "shared", "wsa"), readyRow("alice", "other", "wso")},
			want:    []decisionKey{{"alice/other", "cbx_0000000000a2", "", "keep=true"}, {"alice/shared", "cbx_0000000000a0", "stop", "claim expired"}},
			wantMut: []string{"coder stop --yes alice/shared"},
			keepIDs: []string{"cbx_0000000000a2"}},
	}
	for _, tc := range cases {
		for _, dry := range []bool{true, false} {
			t.Run(tc.name+map[bool]string{true: "/dry-run", false: ""}[dry], func(t *testing.T) {
				h := newHarness(t, func(s *Settings) { s.DeleteOnRelease = tc.deleteOn })
				for _, c := range tc.claims {
					h.claim(c)
				}
				h.whoami().list(tc.own...)
				if tc.all != nil {
					h.listAll(tc.all...)
				}
				h.fake.On("coder stop", execx.Reply{})
				h.fake.On("coder delete", execx.Reply{})
				ds, err := h.p.Cleanup(context.Background(), CleanupRequest{DryRun: dry})
				if err != nil {
					t.Fatalf("Cleanup: %v", err)
				}
				if got := keys(ds); !reflect.DeepEqual(got, tc.want) {
					t.Errorf("decisions:\n got  %+v\n want %+v", got, tc.want)
				}
				rest := []string{}
				if tc.all != nil {
					rest = append(rest, argvListAll)
				}
				if !dry {
					rest = append(rest, tc.wantMut...)
				}
				assertInventoryThen(t, h.argvs(), rest...)
				remaining := map[string]bool{}
				for _, c := range h.allClaims() {
					remaining[c.LeaseID] = true
				}
				for _, d := range ds {
					if d.Done == dry && d.Action != "" {
						t.Errorf("decision %+v: done=%v with dry-run=%v", d, d.Done, dry)
					}
					if d.Action == "" && d.Done {
						t.Errorf("skip decision marked done: %+v", d)
					}
					if d.Action != "" && remaining[d.LeaseID] == !dry {
						t.Errorf("claim %s present=%v after cleanup (dry-run %v)", d.LeaseID, remaining[d.LeaseID], dry)
					}
				}
				for _, id := range tc.keepIDs {
					if !remaining[id] {
						t.Errorf("claim %s was removed", id)
					}
				}
				if dry && len(remaining) != len(tc.claims) {
					t.Errorf("dry-run removed claims: %d of %d left", len(remaining), len(tc.claims))
				}
			})
		}
	}
}

func TestCleanupStopsAtFirstError(t *testing.T) {
	h := newHarness(t, nil)
	h.claim(expired(coderClaim("cbx_0000000000a1", "a", "alice/crabbox-a", "wsa")))
	h.claim(expired(coderClaim("cbx_0000000000a2", "b", "alice/crabbox-b", "wsb")))
	h.claim(expired(coderClaim("cbx_0000000000a3", "c", "alice/crabbox-c", "wsc")))
	h.whoami().list(readyRow("alice", "crabbox-a", "wsa"), readyRow("alice", "crabbox-b", "wsb"), readyRow("alice", "crabbox-c", "wsc"))
	h.fake.On("coder stop --yes alice/crabbox-a", execx.Reply{ExitCode: 1, Stderr: "workspace not found"})
	h.fake.On("coder stop --yes alice/crabbox-b", execx.Reply{ExitCode: 1, Stderr: "permission denied"})
	h.fake.On("coder stop --yes alice/crabbox-c", execx.Reply{})
	ds, err := h.p.Cleanup(context.Background(), CleanupRequest{DryRun: false})
	wantExit(t, err, 1, "permission denied")
	assertInventoryThen(t, h.argvs(), "coder stop --yes alice/crabbox-a", "coder stop --yes alice/crabbox-b")
	if !ds[0].Done || ds[1].Done || ds[2].Done {
		t.Errorf("done flags: %+v", ds)
	}
	left := h.allClaims()
	if len(left) != 2 || left[0].LeaseID != "cbx_0000000000a2" {
		t.Errorf("claims left: %+v", left)
	}
}

func TestProviderList(t *testing.T) {
	h := newHarness(t, nil)
	h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1", "keep", "true"))
	h.claim(coderClaim("cbx_0000000000d0", "dev", "alice/dev", "ws-dev"))
	h.whoami().list(
		readyRow("alice", blueName, "ws1"),
		stoppedRow("alice", "crabbox-blue", "ws2"),
		readyRow("alice", "personal", "ws3"),
		stoppedRow("alice", "dev", "ws-dev"),
		stoppedRow("alice", "team", "ws4").withLabels("crabbox", "true", "lease", "cbx_label", "slug", "team-slug"),
	)
	ls, err := h.p.List(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	type view struct {
		Ref, ID, Slug, State, Keep string
		Claimed                    bool
	}
	var got []view
	for _, l := range ls {
		got = append(got, view{l.Ref, l.ID, l.Slug, l.State, l.Labels["keep"], l.Claim != nil})
		for _, k := range []string{"coder_workspace", "coder_workspace_ref", "lease", "state", "keep", "work_root", "provider"} {
			if l.Labels[k] == "" {
				t.Errorf("%s: label %s missing (%v)", l.Ref, k, l.Labels)
			}
		}
		if l.Labels["coder_workspace"] != l.Workspace || l.Labels["coder_workspace_ref"] != l.Ref || l.Labels["lease"] != l.ID ||
			l.Labels["state"] != l.State || l.Labels["work_root"] != "/home/coder/crabbox" || (l.Slug != "" && l.Labels["slug"] != l.Slug) {
			t.Errorf("%s: labels %v", l.Ref, l.Labels)
		}
	}
	want := []view{
		{"alice/crabbox-blue", lease.SyntheticLeaseID("alice/crabbox-blue"), "blue", "stopped", "false", false},
		{blueRef, blueID, "blue-lobster", "ready", "true", true},
		{"alice/dev", "cbx_0000000000d0", "dev", "stopped", "false", true},
		{"alice/team", "cbx_label", "team-slug", "stopped", "false", false},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("list:\n got  %+v\n want %+v", got, want)
	}
	assertInventoryThen(t, h.argvs())

	all, err := h.p.List(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 {
		t.Fatalf("list --all = %d rows", len(all))
	}
	var personal *Lease
	for _, l := range all {
		if l.Workspace == "personal" {
			personal = l
		}
	}
	if personal == nil || personal.Owned || personal.Claim != nil || personal.ID != lease.SyntheticLeaseID("alice/personal") || personal.Labels["work_root"] == "" {
		t.Errorf("personal = %+v", personal)
	}
	// whoami is asked once per provider; `list --all` of crabbox never
	// means `coder list --all`.
	got2 := h.argvs()
	if countCalls(got2, argvWhoami) != 1 || countCalls(got2, argvListAll) != 0 || countCalls(got2, argvList) != 2 {
		t.Errorf("calls = %q", got2)
	}
	assertNoMutation(t, got2)
}

func TestProviderListForeignClaimUsesAll(t *testing.T) {
	h := newHarness(t, nil)
	h.claim(coderClaim("cbx_owner", "shared", "bob/shared", "wsb"))
	h.whoami().list(readyRow("alice", "shared", "wsa"))
	h.listAll(readyRow("alice", "shared", "wsa"), readyRow("bob", "shared", "wsb"))
	ls, err := h.p.List(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].Ref != "bob/shared" || ls[0].ID != "cbx_owner" || ls[0].Labels["lease"] != "cbx_owner" {
		t.Fatalf("list = %+v", ls)
	}
	assertInventoryThen(t, h.argvs(), argvListAll)
	if strings.Contains(strings.Join(h.argvs(), "\n"), "stop") {
		t.Error("list mutated")
	}
}
