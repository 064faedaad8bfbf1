package remotecmd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/envfwd"
)

// A shard's items reach the command as a file (literal lines, hostile
// names included) that is gone after the command; without items no file
// is made.
func TestRemoteCommandItemsFile(t *testing.T) {
	needBash(t)
	for _, tc := range []struct {
		name  string
		items string
	}{
		{"items", "./pkg/a\n./pkg/$(touch pwned)\nit's \"q\"\n"},
		{"none", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wd := filepath.Join(t.TempDir(), "work")
			file := ItemsFile(wd, testRunID)
			vars := map[string]string{"CRABBOX_SHARD_ITEMS": file}
			script := `if [ -e "$CRABBOX_SHARD_ITEMS" ]; then cat "$CRABBOX_SHARD_ITEMS"; else printf NOFILE; fi`
			c := Render(Params{Workdir: wd, RunID: testRunID, Argv: []string{"bash", "-c", script}, Env: envfwd.Render(vars), Items: tc.items})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "bash", "-c", c.Line)
			cmd.Env, cmd.Dir = bashEnv(t), t.TempDir()
			cmd.Stdin = strings.NewReader(c.Stdin)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				var ee *exec.ExitError
				if !errors.As(err, &ee) {
					t.Fatal(err)
				}
				t.Fatalf("exit %d: %s", ee.ExitCode(), errb.String())
			}
			want := tc.items
			if want == "" {
				want = "NOFILE"
			}
			if out.String() != want {
				t.Fatalf("the command read %q, want %q", out.String(), want)
			}
			if _, err := os.Stat(file); !os.IsNotExist(err) {
				t.Fatalf("items file after the command: %v (want gone)", err)
			}
			if _, err := os.Stat(filepath.Join(cmd.Dir, "pwned")); err == nil {
				t.Fatal("an item was executed")
			}
		})
	}
}
