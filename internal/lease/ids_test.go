package lease

import (
	"testing"
)

func TestNewIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		id := NewLeaseID()
		if !IsLeaseID(id) {
			t.Fatalf("NewLeaseID() = %q, not canonical", id)
		}
		if IsRunID(id) {
			t.Fatalf("lease ID %q accepted as run ID", id)
		}
		if seen[id] {
			t.Fatalf("duplicate lease ID %q", id)
		}
		seen[id] = true

		run := NewRunID()
		if !IsRunID(run) {
			t.Fatalf("NewRunID() = %q, not canonical", run)
		}
		if IsLeaseID(run) {
			t.Fatalf("run ID %q accepted as lease ID", run)
		}
	}
}

func TestIsLeaseID(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"cbx_4f1c2a9be310", true},
		{"cbx_000000000000", true},
		{"cbx_4F1C2A9BE310", false}, // uppercase hex
		{"cbx_4f1c2a9be31", false},  // 11 hex
		{"cbx_4f1c2a9be3100", false},
		{"cbx_4f1c2a9be31g", false},
		{"CBX_4f1c2a9be310", false},
		{" cbx_4f1c2a9be310", false},
		{"cbx_4f1c2a9be310\n", false},
		{"run_4f1c2a9be310", false},
		{"blue-lobster", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := IsLeaseID(tt.in); got != tt.want {
			t.Errorf("IsLeaseID(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if !IsRunID("run_0123456789ab") || IsRunID("run_0123456789AB") || IsRunID("run_") {
		t.Error("IsRunID misclassifies")
	}
}

func TestSyntheticLeaseID(t *testing.T) {
	tests := []struct{ ref, want string }{
		// sha1("coder:dev") = 8e1f0257fa5c3211ddaece66b7b102df4640ff6a
		{"dev", "cbx_8e1f0257fa5c"},
		{"alice/crabbox-blue-lobster-8d41ce", "cbx_464b91c845df"},
	}
	for _, tt := range tests {
		got := SyntheticLeaseID(tt.ref)
		if got != tt.want {
			t.Errorf("SyntheticLeaseID(%q) = %q, want %q", tt.ref, got, tt.want)
		}
		if !IsLeaseID(got) {
			t.Errorf("SyntheticLeaseID(%q) = %q is not canonical", tt.ref, got)
		}
		if SyntheticLeaseID(tt.ref) != got {
			t.Errorf("SyntheticLeaseID(%q) not stable", tt.ref)
		}
	}
	if SyntheticLeaseID("alice/dev") == SyntheticLeaseID("bob/dev") {
		t.Error("different refs share a synthetic ID")
	}
}
