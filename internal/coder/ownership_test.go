package coder

import (
	"testing"

	"github.com/crabbox-dev/crabbox/internal/lease"
)

func TestOwned(t *testing.T) {
	synth := lease.SyntheticLeaseID
	cases := []struct {
		name  string
		w     Workspace
		owned bool
		lease string
		slug  string
	}{
		{"provider only", Workspace{Name: "team-workspace", Labels: map[string]string{"provider": "coder"}}, false, "", ""},
		{"provider+slug", Workspace{Name: "team-workspace", Labels: map[string]string{"provider": "coder", "slug": "blue"}}, false, "", ""},
		{"slug only", Workspace{Name: "team-workspace", Labels: map[string]string{"slug": "blue"}}, false, "", ""},
		{"lease without marker", Workspace{Name: "team-workspace", Labels: map[string]string{"lease": "cbx_label"}}, false, "", ""},
		{"crabbox=false", Workspace{Name: "team-workspace", Labels: map[string]string{"crabbox": "false", "lease": "cbx_label"}}, false, "", ""},
		{"no labels", Workspace{Name: "personal"}, false, "", ""},
		{"prefix + unrelated label", Workspace{Name: "crabbox-blue", Labels: map[string]string{"provider": "terraform"}}, true, synth("crabbox-blue"), "blue"},
		{"prefix", Workspace{Name: "crabbox-blue-lobster-8d41ce", Owner: "alice"}, true, synth("alice/crabbox-blue-lobster-8d41ce"), "blue-lobster-8d41ce"},
		{"prefix case", Workspace{Name: "Crabbox-Blue"}, true, synth("Crabbox-Blue"), "blue"},
		{"name equals prefix stem", Workspace{Name: "crabbox"}, false, "", ""},
		{"marker + lease/slug", Workspace{Name: "team-workspace", Labels: map[string]string{
			"crabbox": "true", "created_by": "crabbox", "provider": "coder", "lease": "cbx_label", "slug": "blue-lobster"}}, true, "cbx_label", "blue-lobster"},
		{"created_by marker", Workspace{Name: "team-workspace", Labels: map[string]string{"created_by": "Crabbox", "slug": "Blue Lobster"}}, true, synth("team-workspace"), "blue-lobster"},
		{"marker TRUE", Workspace{Name: "team-workspace", Labels: map[string]string{"crabbox": "TRUE", "lease": "cbx_label"}}, true, "cbx_label", ""},
		{"marker only", Workspace{Name: "team-workspace", Owner: "alice", Labels: map[string]string{"crabbox": "true"}}, true, synth("alice/team-workspace"), ""},
		{"legacy", Workspace{Name: "team-workspace", Labels: map[string]string{"crabbox_lease_id": "cbx_legacy", "crabbox_slug": "legacy-lobster"}}, true, "cbx_legacy", "legacy-lobster"},
		{"legacy slug only", Workspace{Name: "team-workspace", Labels: map[string]string{"crabbox_slug": "legacy-lobster", "lease": "cbx_generic"}}, true, "cbx_generic", "legacy-lobster"},
		{"legacy id only", Workspace{Name: "team-workspace", Labels: map[string]string{"crabbox_lease_id": "cbx_legacy", "slug": "s"}}, true, "cbx_legacy", "s"},
		{"legacy blank", Workspace{Name: "team-workspace", Labels: map[string]string{"crabbox_lease_id": " "}}, false, "", ""},
		{"labels beat prefix", Workspace{Name: "crabbox-blue", Labels: map[string]string{"crabbox": "true", "lease": "cbx_label", "slug": "green"}}, true, "cbx_label", "green"},
	}
	for _, tc := range cases {
		owned, lease, slug := Owned(tc.w, "crabbox-")
		if owned != tc.owned || lease != tc.lease || slug != tc.slug {
			t.Errorf("%s: Owned = %v %q %q; want %v %q %q", tc.name, owned, lease, slug, tc.owned, tc.lease, tc.slug)
		}
	}
}

func TestOwnedPrefixVariants(t *testing.T) {
	w := Workspace{Name: "crabbox-blue"}
	for _, p := range []string{"crabbox-", "crabbox", " Crabbox- ", "crabbox--"} {
		if owned, _, slug := Owned(w, p); !owned || slug != "blue" {
			t.Errorf("prefix %q: owned %v slug %q", p, owned, slug)
		}
	}
	for _, p := range []string{"", "-", "other-", "crab box"} {
		if owned, _, _ := Owned(w, p); owned {
			t.Errorf("prefix %q: owned", p)
		}
	}
}

// TestOwnedSyntheticLeaseID: a workspace adopted by prefix gets the stable
// lease.SyntheticLeaseID of its ref.
func TestOwnedSyntheticLeaseID(t *testing.T) {
	id := lease.SyntheticLeaseID("crabbox-blue")
	_, a, _ := Owned(Workspace{Name: "crabbox-blue"}, "crabbox-")
	_, b, _ := Owned(Workspace{Name: "crabbox-blue"}, "crabbox-")
	if a != b || a != id {
		t.Errorf("%q %q %q", a, b, id)
	}
}
