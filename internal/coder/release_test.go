package coder

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// resolveAndRelease is what `crabbox stop <ident>` does.
func resolveAndRelease(h *harness, ident string) (*Lease, ReleaseResult, error) {
	l, err := h.p.Resolve(context.Background(), ResolveRequest{Ident: ident, Mode: ReleaseOnly})
	if err != nil {
		return nil, ReleaseResult{}, err
	}
	res, err := h.p.Release(context.Background(), l, ReleaseRequest{})
	return l, res, err
}

func assertNoStopOrDelete(t *testing.T, got []string) {
	t.Helper()
	for _, a := range got {
		if strings.HasPrefix(a, "coder stop") || strings.HasPrefix(a, "coder delete") || strings.HasPrefix(a, "coder start") {
			t.Errorf("mutating call %q (calls %q)", a, got)
		}
	}
}

func TestReleaseRefusesWithoutExactClaim(t *testing.T) {
	cases := []struct {
		name   string
		claims []claims.Claim
		rows   []wsRow
		ident  string
		msg    []string
	}{
		{name: "prefix-owned, unclaimed, by name", rows: []wsRow{readyRow("alice", "crabbox-blue", "ws1")}, ident: "crabbox-blue",
			msg: []string{"refusing", "no crabbox claim", "nothing was changed", "crabbox ssh alice/crabbox-blue"}},
		{name: "prefix-owned, unclaimed, by slug", rows: []wsRow{readyRow("alice", "crabbox-blue", "ws1")}, ident: "blue",
			msg: []string{"refusing", "no crabbox claim"}},
		{name: "unowned by owner/name", rows: []wsRow{readyRow("alice", "personal", "ws1")}, ident: "alice/personal",
			msg: []string{"refusing", "coder stop alice/personal"}},
		{name: "claim of another deployment", rows: []wsRow{readyRow("alice", blueName, "ws1")}, ident: blueName,
			claims: []claims.Claim{func() claims.Claim {
				c := coderClaim(blueID, "blue-lobster", blueRef, "ws1")
				c.CoderURL = "https://other.example.com"
				return c
			}()},
			msg: []string{"refusing"}},
		{name: "recreated workspace with the same name", rows: []wsRow{readyRow("alice", blueName, "ws-new")}, ident: blueName,
			claims: []claims.Claim{coderClaim(blueID, "blue-lobster", blueRef, "ws-old")},
			msg:    []string{"refusing", "ws-old", "ws-new", "nothing was changed", "crabbox stop " + blueID}},
		{name: "recreated workspace by owner/name", rows: []wsRow{readyRow("alice", blueName, "ws-new")}, ident: blueRef,
			claims: []claims.Claim{coderClaim(blueID, "blue-lobster", blueRef, "ws-old")},
			msg:    []string{"refusing", "ws-old"}},
	}
	for _, tc := range cases {
		for _, deleteOn := range []bool{false, true} {
			t.Run(tc.name+map[bool]string{false: "", true: " (delete policy)"}[deleteOn], func(t *testing.T) {
				h := newHarness(t, func(s *Settings) { s.DeleteOnRelease = deleteOn })
				for _, c := range tc.claims {
					h.claim(c)
				}
				h.whoami().list(tc.rows...)
				h.fake.On("coder stop", execx.Reply{})
				h.fake.On("coder delete", execx.Reply{})
				before := h.allClaims()
				_, _, err := resolveAndRelease(h, tc.ident)
				wantRefused(t, err, tc.msg...)
				assertNoStopOrDelete(t, h.argvs())
				assertInventoryThen(t, h.argvs())
				if after := h.allClaims(); len(after) != len(before) {
					t.Errorf("claims changed: %d -> %d", len(before), len(after))
				}
			})
		}
	}
}

func TestReleaseClaimed(t *testing.T) {
	// The action is the one the claim recorded; only the command-line flag
	// (ReleaseOverride) changes it, a config value (deleteOn) never does.
	cases := []struct {
		name        string
		deleteOn    bool   // coder.deleteOnRelease from a config file
		override    string // --coder-delete-on-release[=false] on the command line
		claimAction string // persisted coder_release_action
		row         wsRow
		reply       execx.Reply
		wantCall    string // "" no coder call
		wantAction  string
		wantSkipped bool
		wantErr     string
	}{
		{name: "default stops", row: readyRow("alice", blueName, "ws1"),
			wantCall: "coder stop --yes " + blueRef, wantAction: "stop"},
		{name: "persisted delete deletes", claimAction: "delete", row: readyRow("alice", blueName, "ws1"),
			wantCall: "coder delete --yes " + blueRef, wantAction: "delete"},
		{name: "config delete does not beat persisted stop", deleteOn: true, claimAction: "stop", row: readyRow("alice", blueName, "ws1"),
			wantCall: "coder stop --yes " + blueRef, wantAction: "stop"},
		{name: "flag delete beats persisted stop", override: ActionDelete, claimAction: "stop", row: readyRow("alice", blueName, "ws1"),
			wantCall: "coder delete --yes " + blueRef, wantAction: "delete"},
		{name: "flag stop beats persisted delete", override: ActionStop, claimAction: "delete", row: readyRow("alice", blueName, "ws1"),
			wantCall: "coder stop --yes " + blueRef, wantAction: "stop"},
		{name: "already stopped, stop: no call", row: stoppedRow("alice", blueName, "ws1"),
			wantAction: "stop", wantSkipped: true},
		{name: "already stopped, config delete: no call", deleteOn: true, row: stoppedRow("alice", blueName, "ws1"),
			wantAction: "stop", wantSkipped: true},
		{name: "already stopped, flag delete: deleted", override: ActionDelete, row: stoppedRow("alice", blueName, "ws1"),
			wantCall: "coder delete --yes " + blueRef, wantAction: "delete"},
		{name: "coder says not found", row: readyRow("alice", blueName, "ws1"),
			reply:    execx.Reply{ExitCode: 1, Stderr: "Workspace \"alice/x\" does not exist"},
			wantCall: "coder stop --yes " + blueRef, wantAction: "stop", wantSkipped: true},
		{name: "coder says not found (delete)", claimAction: "delete", row: readyRow("alice", blueName, "ws1"),
			reply:    execx.Reply{ExitCode: 1, Stderr: "workspace not found"},
			wantCall: "coder delete --yes " + blueRef, wantAction: "delete", wantSkipped: true},
		{name: "coder fails", row: readyRow("alice", blueName, "ws1"),
			reply:    execx.Reply{ExitCode: 3, Stderr: "permission denied"},
			wantCall: "coder stop --yes " + blueRef, wantAction: "stop", wantErr: "permission denied"},
	}
	for _, tc := range cases {
		for _, ident := range []string{blueID, "blue-lobster", blueName, blueRef} {
			t.Run(tc.name+"/"+ident, func(t *testing.T) {
				h := newHarness(t, func(s *Settings) { s.DeleteOnRelease, s.ReleaseOverride = tc.deleteOn, tc.override })
				c := coderClaim(blueID, "blue-lobster", blueRef, "ws1")
				if tc.claimAction != "" {
					c.Labels["coder_release_action"] = tc.claimAction
				}
				h.claim(c)
				h.whoami().list(tc.row)
				h.fake.On("coder stop", tc.reply)
				h.fake.On("coder delete", tc.reply)
				_, res, err := resolveAndRelease(h, ident)
				var rest []string
				if tc.wantCall != "" {
					rest = []string{tc.wantCall}
				}
				assertInventoryThen(t, h.argvs(), rest...)
				if res.Action != tc.wantAction {
					t.Errorf("action = %q, want %q", res.Action, tc.wantAction)
				}
				if tc.wantErr != "" {
					wantExit(t, err, 3, tc.wantErr)
					if h.getClaim(blueID) == nil {
						t.Error("claim removed although the release failed")
					}
					return
				}
				if err != nil {
					t.Fatalf("Release: %v", err)
				}
				if (res.Skipped != "") != tc.wantSkipped {
					t.Errorf("skipped = %q, want skipped=%v", res.Skipped, tc.wantSkipped)
				}
				if len(h.allClaims()) != 0 {
					t.Errorf("claim kept after release: %+v", h.allClaims())
				}
			})
		}
	}
}

func TestReleaseMissingWorkspace(t *testing.T) {
	// The claimed workspace is gone: ReleaseOnly resolves to a "missing"
	// lease and Release just removes the claim.
	cases := []struct {
		name  string
		claim claims.Claim
		rows  []wsRow
		ident string
	}{
		{"by lease ID, empty inventory", coderClaim(blueID, "blue-lobster", blueRef, "ws1"), nil, blueID},
		{"by slug", coderClaim(blueID, "blue-lobster", blueRef, "ws1"), []wsRow{readyRow("alice", "personal", "ws9")}, "blue-lobster"},
		{"by name", coderClaim(blueID, "blue-lobster", blueRef, "ws1"), nil, blueName},
		{"legacy bare claim", coderClaim("cbx_gone", "blue", "crabbox-blue", ""), nil, "cbx_gone"},
		{"by lease ID, name now taken by a recreated workspace", coderClaim(blueID, "blue-lobster", blueRef, "ws-old"),
			[]wsRow{readyRow("alice", blueName, "ws-new")}, blueID},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(s *Settings) { s.DeleteOnRelease = true })
			h.claim(tc.claim)
			h.whoami().list(tc.rows...)
			l, err := h.p.Resolve(context.Background(), ResolveRequest{Ident: tc.ident, Mode: ReleaseOnly})
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			ref := tc.claim.CloudID
			if l.State != StateMissing || l.ID != tc.claim.LeaseID || l.Ref != ref || l.Labels["coder_workspace_ref"] != ref ||
				l.Labels["coder_workspace"] != bareName(ref) || l.Labels["lease"] != tc.claim.LeaseID || l.Labels["state"] != StateMissing {
				t.Errorf("lease = state %q id %q ref %q labels %v", l.State, l.ID, l.Ref, l.Labels)
			}
			res, err := h.p.Release(context.Background(), l, ReleaseRequest{})
			if err != nil || res.Skipped == "" {
				t.Fatalf("Release: %+v %v", res, err)
			}
			assertInventoryThen(t, h.argvs())
			if len(h.allClaims()) != 0 {
				t.Error("claim not removed")
			}
		})
	}

	// Status of the same lease is "not found", not a missing lease.
	h := newHarness(t, nil)
	h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1"))
	h.whoami().list()
	_, err := resolve(h, blueID, StatusOnly)
	wantExit(t, err, exitcode.NotFound, "was not found", "crabbox stop "+blueID)
}

func TestReleaseForeignOwnerClaim(t *testing.T) {
	h := newHarness(t, nil)
	h.claim(coderClaim("cbx_0000000000b0", "bobs", "bob/shared", "wsb"))
	h.whoami().list(readyRow("alice", "shared", "wsa"))
	h.listAll(readyRow("alice", "shared", "wsa"), readyRow("bob", "shared", "wsb"))
	h.fake.On("coder stop", execx.Reply{})
	_, _, err := resolveAndRelease(h, "bobs")
	if err != nil {
		t.Fatal(err)
	}
	assertInventoryThen(t, h.argvs(), argvListAll, "coder stop --yes bob/shared")
}

func TestReleaseHandBuiltLeases(t *testing.T) {
	h := newHarness(t, nil)
	h.fake.On("coder stop", execx.Reply{})
	// No claim at all.
	_, err := h.p.Release(context.Background(), &Lease{ID: blueID, Ref: blueRef, State: StateReady}, ReleaseRequest{})
	wantExit(t, err, exitcode.Usage, "refusing")
	// Claim bound to another workspace ID.
	c := coderClaim(blueID, "blue-lobster", blueRef, "ws-old")
	_, err = h.p.Release(context.Background(), &Lease{ID: blueID, Ref: blueRef, WorkspaceID: "ws-new", State: StateReady, Claim: &c}, ReleaseRequest{})
	wantExit(t, err, exitcode.Usage, "refusing", "ws-old", "ws-new")
	// No workspace name.
	c.WorkspaceID = ""
	_, err = h.p.Release(context.Background(), &Lease{ID: blueID, State: StateReady, Claim: &c}, ReleaseRequest{})
	wantExit(t, err, exitcode.Usage, "requires a workspace name")
	if got := h.argvs(); len(got) != 0 {
		t.Errorf("calls = %q", got)
	}
}

// "not found" only counts as "the workspace is gone" when the Coder CLI ran
// and said so: a CLI that cannot be started ("executable file not found")
// or a shell's 127 "command not found" must keep the claim and fail.
func TestReleaseCLIMissingIsNotWorkspaceGone(t *testing.T) {
	execNotFound := errors.New(`exec: "coder": executable file not found in $PATH`)
	replies := map[string]execx.Reply{
		"exec error": {Err: execNotFound},
		"exit 127":   {ExitCode: 127, Stderr: "sh: coder: command not found"},
	}
	for name, reply := range replies {
		t.Run("release/"+name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1"))
			h.whoami().list(readyRow("alice", blueName, "ws1"))
			h.fake.On("coder stop", reply)
			_, res, err := resolveAndRelease(h, blueID)
			if err == nil {
				t.Fatalf("Release succeeded (%+v) although coder never ran", res)
			}
			if h.getClaim(blueID) == nil {
				t.Error("claim removed although the workspace was not stopped")
			}
		})
		t.Run("cleanup/"+name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.claim(expired(coderClaim(blueID, "blue-lobster", blueRef, "ws1")))
			h.whoami().list(readyRow("alice", blueName, "ws1"))
			h.fake.On("coder stop", reply)
			ds, err := h.p.Cleanup(context.Background(), CleanupRequest{DryRun: false})
			if err == nil || len(ds) != 1 || ds[0].Done {
				t.Fatalf("Cleanup = %+v, %v; want an error", ds, err)
			}
			if h.getClaim(blueID) == nil {
				t.Error("claim removed although the workspace was not stopped")
			}
		})
		t.Run("rollback/"+name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.whoami().live()
			h.onCreate(execx.Reply{}, true)
			h.fake.On("coder stop", reply)
			_, err := h.p.Acquire(context.Background(), AcquireRequest{RepoRoot: "/src/app",
				Ready: func(context.Context, *Lease) error { return errFailure("ssh down") }})
			wantExit(t, err, 1, "ssh down", "to clean up by hand: next: `crabbox stop")
			if len(h.allClaims()) != 1 {
				t.Error("claim removed although the rollback did not run")
			}
		})
	}
}

// The workspace is stopped but the claim cannot be removed (a read-only
// state dir; here the lock dir is unusable): Release says exactly that,
// with the claim's path, and the claim stays. Once the store works again,
// the same release only removes the claim (no second stop).
func TestReleaseStoppedButClaimKept(t *testing.T) {
	h := newHarness(t, nil)
	h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1"))
	h.whoami().live(readyRow("alice", blueName, "ws1"))
	h.fake.On("coder stop", execx.Reply{Do: func(execx.Call) { h.setRows(stoppedRow("alice", blueName, "ws1")) }})
	locks := h.store.LocksDir()
	if err := os.RemoveAll(locks); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(locks, []byte("not a dir"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := resolveAndRelease(h, blueID)
	var kept *ClaimKeptError
	if !errors.As(err, &kept) || exitcode.Code(err) != exitcode.Failure {
		t.Fatalf("err = %v (code %d), want a ClaimKeptError", err, exitcode.Code(err))
	}
	if kept.LeaseID != blueID || kept.Path != h.store.Path(blueID) || kept.Result.Action != ActionStop || kept.Result.Skipped != "" || kept.Err == nil {
		t.Errorf("kept = %+v", kept)
	}
	if countCalls(h.argvs(), "coder stop --yes "+blueRef) != 1 {
		t.Errorf("calls %q", h.argvs())
	}
	if _, err := os.Stat(h.store.Path(blueID)); err != nil {
		t.Fatalf("claim gone although removing it failed: %v", err)
	}
	// Repaired: the retry skips Coder and removes the claim.
	if err := os.Remove(locks); err != nil {
		t.Fatal(err)
	}
	_, res, err := resolveAndRelease(h, blueID)
	if err != nil || res.Skipped != "workspace already stopped" {
		t.Fatalf("retry: %v %+v", err, res)
	}
	if countCalls(h.argvs(), "coder stop --yes "+blueRef) != 1 {
		t.Errorf("retry stopped again: %q", h.argvs())
	}
	if h.getClaim(blueID) != nil {
		t.Error("claim still present after the retry")
	}
}

// A release that meets a build Coder is already running (an autostop
// under way when `crabbox stop` comes) waits for it and issues the stop
// or delete again, instead of failing and keeping the claim; a build that
// never ends is bounded and names the retry.
func TestReleaseWaitsForActiveBuild(t *testing.T) {
	oldRetry, oldWait := releaseRetryInterval, buildWaitTimeout
	releaseRetryInterval = time.Millisecond
	t.Cleanup(func() { releaseRetryInterval, buildWaitTimeout = oldRetry, oldWait })
	active := execx.Reply{ExitCode: 1, Stderr: "create workspace build: unexpected status code 409: A workspace build is already active."}
	for _, action := range []string{ActionStop, ActionDelete} {
		t.Run(action, func(t *testing.T) {
			buildWaitTimeout = time.Minute
			h := newHarness(t, func(s *Settings) { s.ReleaseOverride = action })
			h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1"))
			h.whoami().list(readyRow("alice", blueName, "ws1"))
			h.fake.On("coder "+action, active, active, execx.Reply{})
			_, res, err := resolveAndRelease(h, blueID)
			if err != nil || res.Action != action {
				t.Fatalf("Release: %+v %v", res, err)
			}
			n := 0
			for _, a := range h.argvs() {
				if strings.HasPrefix(a, "coder "+action+" --yes "+blueRef) {
					n++
				}
			}
			if n != 3 {
				t.Errorf("%d `coder %s` calls, want 3 (two refused, one done): %q", n, action, h.argvs())
			}
			if len(h.allClaims()) != 0 {
				t.Errorf("claim kept after the release: %+v", h.allClaims())
			}
		})
	}
	t.Run("never ends", func(t *testing.T) {
		buildWaitTimeout = 20 * time.Millisecond
		h := newHarness(t, nil)
		h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1"))
		h.whoami().list(readyRow("alice", blueName, "ws1"))
		for range 1000 {
			h.fake.On("coder stop", active)
		}
		_, _, err := resolveAndRelease(h, blueID)
		wantExit(t, err, exitcode.Transport, "waiting for the build", "crabbox stop "+blueID)
		if h.getClaim(blueID) == nil {
			t.Error("claim removed although nothing was released")
		}
	})
}
