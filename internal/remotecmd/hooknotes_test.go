package remotecmd

import (
	"slices"
	"testing"
)

func TestHookNotes(t *testing.T) {
	tests := []struct {
		stderr string
		want   []string
	}{
		{"", nil},
		{"crabbox: stopped the command left running by run run_1\n", []string{"stopped the command left running by run run_1"}},
		{"noise\n  crabbox: a\ncrabbox:\ncrabbox sync: not a note\ncrabbox-owner owner x\ncrabbox: b", []string{"a", "b"}},
	}
	for _, tt := range tests {
		if got := HookNotes(tt.stderr); !slices.Equal(got, tt.want) {
			t.Errorf("HookNotes(%q) = %q, want %q", tt.stderr, got, tt.want)
		}
	}
}
