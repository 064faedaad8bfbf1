package runner

import (
	"context"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/runs"
)

// --preflight: one round trip after the sync and before the command; the
// snapshot is printed and stored in the record, with a phase.
func TestRunPreflight(t *testing.T) {
	h := newHarness(t)
	s := h.spec("true")
	s.Preflight, s.PreflightTools = true, []string{"crabbox-no-such-tool"}
	out, err := Run(context.Background(), h.deps, s)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, h.notes)
	}
	notes := h.notes.String()
	if !strings.Contains(notes, "preflight: ") || !strings.Contains(notes, "CPUs") || !strings.Contains(notes, "crabbox-no-such-tool missing") {
		t.Errorf("notes lack the snapshot:\n%s", notes)
	}
	rec, err := h.store.Get(out.RunID)
	if err != nil {
		t.Fatal(err)
	}
	p := rec.Preflight
	if p == nil || p.CPUs < 1 || p.Error != "" || !strings.HasPrefix(p.Tools["git"], "git version") || p.Tools["crabbox-no-such-tool"] != runs.ToolMissing {
		t.Fatalf("recorded snapshot %+v", p)
	}
	if _, ok := p.Tools["rsync"]; !ok {
		t.Error("rsync not asked for")
	}
	found := false
	for _, ph := range rec.Phases {
		found = found || ph.Name == "preflight"
	}
	if !found {
		t.Errorf("no preflight phase: %+v", rec.Phases)
	}
	// One round trip, before the command.
	pre, cmd := -1, -1
	for i, c := range h.lb.calls() {
		switch {
		case strings.Contains(c, "crabbox-preflight"):
			if pre >= 0 {
				t.Error("more than one preflight round trip")
			}
			pre = i
		case strings.Contains(c, "exec bash -lc"):
			cmd = i
		}
	}
	if pre < 0 || cmd < 0 || pre > cmd {
		t.Errorf("preflight call %d, command call %d: want the preflight first\n%q", pre, cmd, h.lb.calls())
	}
}

// Without --preflight nothing is asked; a preflight that fails only warns
// and the run goes on.
func TestRunPreflightOffAndFailing(t *testing.T) {
	h := newHarness(t)
	out, err := Run(context.Background(), h.deps, h.spec("true"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range h.lb.calls() {
		if strings.Contains(c, "crabbox-preflight") {
			t.Errorf("preflight ran without --preflight: %s", c)
		}
	}
	if rec, _ := h.store.Get(out.RunID); rec.Preflight != nil {
		t.Errorf("record has a snapshot without --preflight: %+v", rec.Preflight)
	}

	h = newHarness(t)
	h.lb.transport = "crabbox-preflight"
	s := h.spec("sh", "-c", "echo ran")
	s.Preflight = true
	out, err = Run(context.Background(), h.deps, s)
	if err != nil || out.Exit != 0 || strings.TrimSpace(h.out.String()) != "ran" {
		t.Fatalf("run with a failing preflight: exit %d, %v, stdout %q\n%s", out.Exit, err, h.out, h.notes)
	}
	if !strings.Contains(h.notes.String(), "warning: preflight:") {
		t.Errorf("no warning:\n%s", h.notes)
	}
	if rec, _ := h.store.Get(out.RunID); rec.Preflight == nil || rec.Preflight.Error == "" {
		t.Errorf("failed snapshot not recorded with its error: %+v", rec.Preflight)
	}
}
