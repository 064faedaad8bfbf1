//go:build e2e

// Package e2e drives crabbox and the real coder CLI against the project's
// Coder lab (scripts/coder-lab). TestMain brings the lab up once per package
// run with its own state dir, builds crabbox, runs the tests, and takes the
// lab down again. Without the lab's binaries the run FAILS: these tests are
// never skipped.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Timeouts for every wait in this package.
const (
	labUpTimeout   = 10 * time.Minute
	labDownTimeout = 2 * time.Minute
	cmdTimeout     = 3 * time.Minute
)

// lab holds what the running lab exported.
var lab struct {
	Root      string // repository root
	Script    string // scripts/coder-lab/lab
	PATH      string // PATH with the lab's coder first
	ConfigDir string // CODER_CONFIG_DIR of the lab's admin
	URL       string
	Template  string
	State     string
	Coder     string // absolute path of the lab's coder binary
	Crabbox   string // freshly built crabbox binary
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	lab.Root = root
	lab.Script = filepath.Join(root, "scripts", "coder-lab", "lab")
	tmp, err := os.MkdirTemp("", "crabbox-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	keep := os.Getenv("CRABBOX_E2E_KEEP") != ""
	defer func() {
		if !keep {
			os.RemoveAll(tmp)
		}
	}()
	// A private lab state: a lab the developer already runs is left alone.
	state := os.Getenv("CRABBOX_E2E_LAB_STATE")
	if state == "" {
		state = filepath.Join(tmp, "lab")
	}
	os.Setenv("CODER_LAB_STATE", state)

	lab.Crabbox = filepath.Join(tmp, "crabbox")
	if out, err := runCmd(cmdTimeout, root, nil, "go", "build", "-o", lab.Crabbox, "./cmd/crabbox"); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building crabbox: %v\n%s", err, out)
		return 1
	}

	fmt.Fprintf(os.Stderr, "e2e: lab up (state %s)\n", state)
	start := time.Now()
	if out, err := runCmd(labUpTimeout, root, nil, lab.Script, "up"); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: lab up failed (run 'make lab-setup' first?): %v\n%s", err, out)
		labDown(root)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: lab up in %s\n", time.Since(start).Round(100*time.Millisecond))
	if !keep {
		defer labDown(root)
	}
	// Read the lab's env lines through bash so its quoting is honoured.
	out, err := runCmd(cmdTimeout, root, nil, "bash", "-c",
		`eval "$("$0" env)" && printf '%s\0' "$PATH" "$CODER_CONFIG_DIR" "$CODER_URL" "$CODER_LAB_TEMPLATE" "$CODER_LAB_STATE"`, lab.Script)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: lab env: %v\n%s", err, out)
		return 1
	}
	parts := strings.Split(string(out), "\x00")
	if len(parts) < 5 {
		fmt.Fprintf(os.Stderr, "e2e: unexpected lab env output %q\n", out)
		return 1
	}
	lab.PATH, lab.ConfigDir, lab.URL, lab.Template, lab.State = parts[0], parts[1], parts[2], parts[3], parts[4]
	lab.Coder = filepath.Join(strings.SplitN(lab.PATH, ":", 2)[0], "coder")
	if _, err := os.Stat(lab.Coder); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: lab coder binary: %v\n", err)
		return 1
	}
	return m.Run()
}

func labDown(root string) {
	if out, err := runCmd(labDownTimeout, root, nil, lab.Script, "down"); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: lab down failed: %v\n%s", err, out)
	}
}

// runCmd runs name with a timeout, returning combined output.
func runCmd(timeout time.Duration, dir string, env []string, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = env
	}
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	return buf.Bytes(), err
}

// labEnv is the environment of a process talking to the lab as its admin,
// with crabbox's own dirs isolated under t.TempDir().
func labEnv(t *testing.T) []string {
	t.Helper()
	home := t.TempDir()
	env := []string{
		"PATH=" + lab.PATH,
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_STATE_HOME=" + filepath.Join(home, ".local", "state"),
		"CODER_CONFIG_DIR=" + lab.ConfigDir,
		"CODER_URL=" + lab.URL,
		"LANG=C.UTF-8",
	}
	return env
}
