package coder

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/provider"
)

// A claim file written by crabbox before the provider seam (commit
// 2dd7ae8, testdata/claim-2dd7ae8.json) keeps working: the provider
// interface resolves it by slug and releases it with its recorded action.
func TestClaimWrittenBeforeTheProviderSeam(t *testing.T) {
	h := newHarness(t, nil)
	b, err := os.ReadFile(filepath.Join("testdata", "claim-2dd7ae8.json"))
	if err != nil {
		t.Fatal(err)
	}
	path := h.store.Path("cbx_2027ee11f352")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	h.whoami().live(wsRow{ID: "ws-new", Owner: "alice", Name: "crabbox-blue-ea06cb", Status: "running", Transition: "start", Agent: "ready"})
	h.fake.On("coder stop", execx.Reply{})
	var p provider.Provider = h.p
	l, err := p.Resolve(context.Background(), provider.ResolveRequest{Ident: "blue", Mode: provider.ReleaseOnly})
	if err != nil {
		t.Fatal(err)
	}
	if l.ID != "cbx_2027ee11f352" || l.Ref != "alice/crabbox-blue-ea06cb" || l.Claim == nil || l.Provider != "coder" {
		t.Fatalf("lease %+v", l)
	}
	if !p.ClaimMatches(*l.Claim, "crabbox-blue-ea06cb") {
		t.Error("the claim does not match its workspace name")
	}
	res, err := p.Release(context.Background(), l, provider.ReleaseRequest{RepoRoot: "/src/app"})
	if err != nil || res.Action != provider.ActionStop {
		t.Fatalf("release %+v, %v", res, err)
	}
	if got := h.argvs(); got[len(got)-1] != "coder stop --yes alice/crabbox-blue-ea06cb" {
		t.Errorf("calls %q", got)
	}
	if len(h.allClaims()) != 0 {
		t.Error("claim kept after the release")
	}
}
