package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/crabbox-dev/crabbox/internal/runner"
)

// maxScriptBytes caps a --script / --script-stdin script (it travels in
// memory and on the ssh session's stdin).
const maxScriptBytes = 16 << 20

// runInput is what a run reads and writes locally besides the tree: the
// command's stdin, a user script, and the capture files.
type runInput struct {
	stdin                        io.Reader
	script                       *runner.Script
	captureStdout, captureStderr string
}

// addRunInputFlags registers the input and capture flags of run.
func addRunInputFlags(cmd *cobra.Command, o *runOptions) {
	fl := cmd.Flags()
	fl.StringVar(&o.script, "script", "", "Upload this local bash script and run it in the command's directory (trailing args become $1…)")
	fl.BoolVar(&o.scriptStdin, "script-stdin", false, "Read the script from stdin (the command's stdin is then /dev/null)")
	fl.StringVar(&o.captureStdout, "capture-stdout", "", "Write the remote stdout's raw bytes to this local file instead of the terminal")
	fl.StringVar(&o.captureStderr, "capture-stderr", "", "Write the remote stderr's raw bytes to this local file instead of the terminal")
}

// validateRunInput checks the input flags against each other and the
// command (usage errors, exit 2).
func validateRunInput(o *runOptions) error {
	scripted := o.script != "" || o.scriptStdin
	switch {
	case o.script != "" && o.scriptStdin:
		return usageErr("--script and --script-stdin both name the script; give one")
	case scripted && o.shell:
		return usageErr("--shell runs a command line; a script runs as it is (drop --shell; trailing words are the script's arguments)")
	case scripted && o.syncOnly:
		return usageErr("--sync-only runs no command; drop the script or --sync-only")
	case o.syncOnly && (o.captureStdout != "" || o.captureStderr != ""):
		return usageErr("--sync-only runs no command; there is no output to capture")
	}
	return nil
}

// readRunInput reads the script, picks the command's stdin, and resolves
// and checks the capture paths, all before anything is leased: crabbox's
// stdin is forwarded when it is not a terminal (and is not the script).
func readRunInput(f *Factory, o *runOptions) (runInput, error) {
	var in runInput
	cwd, err := f.Getwd()
	if err != nil {
		return in, err
	}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(cwd, p)
	}
	in.captureStdout, in.captureStderr = abs(o.captureStdout), abs(o.captureStderr)
	if err := runner.CheckLocalOutputs(runner.LocalOutputPaths(runner.Spec{
		CaptureStdout: in.captureStdout, CaptureStderr: in.captureStderr,
	})); err != nil {
		return in, err
	}
	switch {
	case o.script != "":
		fh, err := os.Open(abs(o.script))
		if err != nil {
			return in, usageErr("--script: %v", err)
		}
		defer fh.Close()
		if st, err := fh.Stat(); err == nil && !st.Mode().IsRegular() {
			return in, usageErr("--script %s: not a regular file", o.script)
		}
		body, err := readScript(fh)
		if err != nil {
			return in, usageErr("--script %s: %v", o.script, err)
		}
		in.script = &runner.Script{Name: o.script, Body: body}
	case o.scriptStdin:
		if f.IO.IsStdinTTY() {
			return in, usageErr("--script-stdin reads the script from stdin, but stdin is a terminal; pipe the script in (crabbox run --script-stdin < script.sh)")
		}
		body, err := readScript(f.IO.In)
		if err != nil {
			return in, usageErr("--script-stdin: %v", err)
		}
		in.script = &runner.Script{Name: "-", Body: body}
	}
	if !o.scriptStdin && !f.IO.IsStdinTTY() {
		in.stdin = f.IO.In
	}
	return in, nil
}

func readScript(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxScriptBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxScriptBytes {
		return nil, fmt.Errorf("larger than %d MiB; put the work in the repository and run it as a command", maxScriptBytes>>20)
	}
	return b, nil
}

// apply puts the input into the run's spec.
func (in runInput) apply(s *runner.Spec) {
	s.Stdin, s.Script = in.stdin, in.script
	s.CaptureStdout, s.CaptureStderr = in.captureStdout, in.captureStderr
}
