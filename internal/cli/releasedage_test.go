package cli

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/execx"
)

func TestParseAge(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{in: "7d", want: 7 * 24 * time.Hour},
		{in: "0s", want: 0},
		{in: "36h", want: 36 * time.Hour},
		{in: "1d12h", want: 36 * time.Hour},
		{in: " 2d ", want: 48 * time.Hour},
		{in: "", bad: true},
		{in: "d", bad: true},
		{in: "-1d", bad: true},
		{in: "-5m", bad: true},
		{in: "7days", bad: true},
		{in: "soon", bad: true},
	}
	for _, tc := range cases {
		got, err := parseAge(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("parseAge(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseAge(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// stop uses the claim's recorded action: deleteOnRelease in the user's
// config does not delete a lease recorded release=stop, the command-line
// flag does. A released workspace stays known (list: its lease, released;
// stop: a no-op), and a lease of another repo needs --reclaim.
func TestStopHonoursClaimCLI(t *testing.T) {
	te := newTestEnv(t)
	te.claimLease(t)
	writeFile(t, filepath.Join(te.home, "cfg", "crabbox", "config.yaml"), "coder:\n  deleteOnRelease: true\n")
	var calls []string
	rec := func(c execx.Call) { calls = append(calls, c.Argv()) }
	te.fake.On("coder whoami -o json", execx.Reply{Stdout: cliWhoami}).
		On("coder list -o json", execx.Reply{Stdout: cliRunning}, execx.Reply{Stdout: cliRunning}, execx.Reply{Stdout: cliStopped}).
		On("coder stop --yes "+cliRef, execx.Reply{Do: rec}).
		On("coder delete --yes "+cliRef, execx.Reply{Do: rec})

	// A lease bound to another repo: refused without --reclaim, nothing called.
	store := claims.New(config.StateDir(te.f.Env))
	if _, err := store.Update(cliLease, func(c *claims.Claim, exists bool) error { c.RepoRoot = "/src/other"; return nil }); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := te.run(t, "stop", cliLease); code != 2 || !strings.Contains(errOut, "crabbox stop --reclaim "+cliLease) || len(calls) != 0 {
		t.Fatalf("stop of another repo's lease: exit %d calls %q\n%s", code, calls, errOut)
	}
	if code, _, errOut := te.run(t, "stop", "--reclaim", cliLease); code != 0 || len(calls) != 1 || calls[0] != "coder stop --yes "+cliRef {
		t.Fatalf("stop --reclaim with deleteOnRelease in the user config: exit %d calls %q\n%s", code, calls, errOut)
	}
	code, out, errOut := te.run(t, "list")
	if code != 0 || !strings.Contains(out, " released ") || !strings.Contains(out, "lease="+cliLease) {
		t.Errorf("list after release: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := te.run(t, "stop", cliWS); code != 0 || !strings.Contains(errOut, "already released") || len(calls) != 1 {
		t.Errorf("stop of the released workspace: exit %d calls %q\n%s", code, calls, errOut)
	}
	if code, _, errOut := te.run(t, "stop", "--coder-delete-on-release", cliWS); code != 0 || len(calls) != 2 || calls[1] != "coder delete --yes "+cliRef {
		t.Errorf("stop --coder-delete-on-release: exit %d calls %q\n%s", code, calls, errOut)
	}
}
