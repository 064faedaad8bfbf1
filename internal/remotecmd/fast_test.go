package remotecmd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFastLineVerdicts runs the fast line in bash and in a plain POSIX sh
// (the login shell runs it): an equal fingerprint starts the command, which
// reads the input after the fingerprint line intact; a different or
// missing one answers "sync needed" without starting it and without
// reading past the fingerprint line; the hook runs before the comparison;
// a foreign owner record ends the line before the check.
func TestFastLineVerdicts(t *testing.T) {
	shells := []string{"bash"}
	if _, err := exec.LookPath("dash"); err == nil {
		shells = append(shells, "dash")
	}
	const fp = "fp-1234"
	tests := []struct {
		name     string
		recorded string // the workdir's fingerprint ("" none)
		sent     string
		foreign  bool
		wantCode int
		wantRan  bool
	}{
		{"equal", fp, fp, false, 0, true},
		{"different", fp, "fp-other", false, FastSyncNeeded, false},
		{"none recorded", "", fp, false, FastSyncNeeded, false},
		{"empty sent", fp, "", false, FastSyncNeeded, false},
		{"foreign owner", fp, fp, true, OwnerForeign, false},
	}
	for _, sh := range shells {
		for _, tt := range tests {
			t.Run(sh+"/"+tt.name, func(t *testing.T) {
				dir := t.TempDir()
				root := filepath.Join(dir, "root")
				wd := filepath.Join(root, "repo", "lease")
				meta := filepath.Join(wd, ".crabbox", "sync")
				if err := os.MkdirAll(meta, 0o755); err != nil {
					t.Fatal(err)
				}
				os.WriteFile(filepath.Join(meta, "manifest"), nil, 0o600)
				if tt.recorded != "" {
					os.WriteFile(filepath.Join(meta, "fingerprint"), []byte(tt.recorded+"\n"), 0o600)
				}
				if tt.foreign {
					os.WriteFile(filepath.Join(root, OwnerFile), []byte(ownerRecordLine("cbx_1", machineB, "T0")), 0o600)
				}
				c := FastLine(FastParams{
					Owner:   OwnerScript(OwnerParams{WorkRoot: root, LeaseID: "cbx_1", MachineID: machineA, Now: "T1", Write: true}),
					Compare: true, Hook: "touch \"$wd/hooked\"",
					Command: Params{Workdir: wd, RunID: testRunID, Argv: []string{"sh", "-c", "cat > got; echo ran"}, ForwardStdin: true, Items: "item-a\n"},
				})
				input := "after the fingerprint\x00\nbytes"
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, sh, "-c", c.Line)
				cmd.Env = bashEnv(t)
				cmd.Dir = dir
				cmd.Stdin = strings.NewReader(c.Stdin + tt.sent + "\n" + input)
				var out, errb bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &errb
				err := cmd.Run()
				code := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				if code != tt.wantCode {
					t.Fatalf("exit %d, want %d; stderr %q", code, tt.wantCode, errb.String())
				}
				_, hookErr := os.Stat(filepath.Join(wd, "hooked"))
				ran := strings.Contains(out.String(), "ran")
				if ran != tt.wantRan {
					t.Fatalf("command ran: %v, want %v; stdout %q stderr %q", ran, tt.wantRan, out.String(), errb.String())
				}
				switch {
				case tt.wantRan:
					if !strings.Contains(errb.String(), FastMarker(testRunID)) || hookErr != nil {
						t.Errorf("no go marker or hook: stderr %q, hook %v", errb.String(), hookErr)
					}
					got, err := os.ReadFile(filepath.Join(wd, "got"))
					if err != nil || string(got) != input {
						t.Errorf("the command read %q (%v), want %q", got, err, input)
					}
				case tt.wantCode == FastSyncNeeded:
					if !strings.Contains(errb.String(), FastSyncLine(testRunID)) || hookErr != nil {
						t.Errorf("no sync line or hook: stderr %q, hook %v", errb.String(), hookErr)
					}
					// The files were written (positive control: the env
					// dir exists) and are gone again.
					for _, d := range []string{"env", "runs"} {
						ents, err := os.ReadDir(filepath.Join(wd, ".crabbox", d))
						if err != nil || len(ents) != 0 {
							t.Errorf(".crabbox/%s after sync needed: %v %v", d, ents, err)
						}
					}
				default:
					if hookErr == nil {
						t.Error("the check ran after a refusing owner check")
					}
				}
			})
		}
	}
}
