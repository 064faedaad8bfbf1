package exitcode

import (
	"errors"
	"fmt"
	"os/exec"
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
		{"silent", Silent(Interrupted), 130},
		{"remote code", New(42, base), 42},
		{"refused", Refusef("refusing: %s", "x"), Usage},
		{"refused wrapped", fmt.Errorf("stop: %w", Refusef("refusing")), Usage},
		{"external", External("coder stop", 3, base), 3},
		{"external 2", External("coder stop", 2, base), Usage},
		{"external out of range", External("coder stop", 300, base), Failure},
		{"external killed", External("coder stop", -1, base), Failure},
		{"outermost external", New(Transport, External("coder stop", 3, base)), Transport},
		{"outermost refusal", Refusef("refusing: %w", New(Sync, base)), Usage},
		{"exec.ExitError is not a code", fmt.Errorf("x: %w", execExitError(t, 4)), Failure},
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

func execExitError(t *testing.T, code int) error {
	t.Helper()
	err := exec.Command("sh", "-c", fmt.Sprintf("exit %d", code)).Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != code {
		t.Fatalf("sh exit %d: %v", code, err)
	}
	return err
}

// TestRefusalOrExternal: "coder stop exited 2" and "crabbox refused" both
// exit 2, and a caller can still tell them apart.
func TestRefusalOrExternal(t *testing.T) {
	refused := fmt.Errorf("release: %w", Refusef("refusing to release lease x; nothing was changed"))
	external := fmt.Errorf("release: %w", External("coder stop", 2, errors.New("coder stop workspace x failed")))
	if Code(refused) != Code(external) {
		t.Fatalf("codes differ: %d %d", Code(refused), Code(external))
	}
	if !IsRefused(refused) || IsRefused(external) {
		t.Errorf("IsRefused: refused %v, external %v", IsRefused(refused), IsRefused(external))
	}
	var ee *ExternalError
	if !errors.As(external, &ee) || ee.Program != "coder stop" || ee.Code != 2 || errors.As(refused, &ee) {
		t.Errorf("ExternalError not found where expected: %+v", ee)
	}
	if got := external.Error(); got != "release: coder stop workspace x failed" {
		t.Errorf("external message %q", got)
	}
	if got := External("rsync", 23, nil).Error(); got != "rsync exited 23" {
		t.Errorf("bare external message %q", got)
	}
	if got := refused.Error(); got != "release: refusing to release lease x; nothing was changed" {
		t.Errorf("refusal message %q", got)
	}
}

func TestHints(t *testing.T) {
	if got := Next("crabbox stop --reclaim blue"); got != "next: `crabbox stop --reclaim blue`" {
		t.Errorf("Next = %q", got)
	}
	if got := NextAction("retry"); got != "next_action=retry" {
		t.Errorf("NextAction = %q", got)
	}
}
