package exitcode

import (
	"errors"
	"fmt"
	"testing"
)

func TestCode(t *testing.T) {
	base := errors.New("plain")
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, OK},
		{"plain", base, Failure},
		{"fmt wrapped plain", fmt.Errorf("ctx: %w", base), Failure},
		{"New", New(Usage, base), Usage},
		{"Errorf", Errorf(NotFound, "x %d", 1), NotFound},
		{"wrapped once", fmt.Errorf("a: %w", New(Sync, base)), Sync},
		{"wrapped twice", fmt.Errorf("b: %w", fmt.Errorf("a: %w", New(Transport, base))), Transport},
		{"outermost wins", New(Usage, fmt.Errorf("x: %w", New(Transport, base))), Usage},
		{"joined", errors.Join(base, New(NotFound, base)), NotFound},
		{"silent", Silent(130), 130},
		{"remote code", New(42, base), 42},
	}
	for _, tt := range tests {
		if got := Code(tt.err); got != tt.want {
			t.Errorf("%s: Code = %d, want %d", tt.name, got, tt.want)
		}
	}
	if New(Usage, nil) != nil {
		t.Error("New(code, nil) != nil")
	}
	if e := New(Usage, base); e.Error() != "plain" || !errors.Is(e, base) {
		t.Errorf("New: %q", e)
	}
	if s := Silent(3).Error(); s != "exit status 3" {
		t.Errorf("Silent message %q", s)
	}
}
