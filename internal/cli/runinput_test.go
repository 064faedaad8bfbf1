package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/iostreams"
)

// ttyIn is a stdin that says it is a terminal.
type ttyIn struct{ bytes.Buffer }

func (*ttyIn) IsTerminal() bool { return true }

// runWithStdin runs crabbox with stdin in.
func (te *testEnv) runWithStdin(t *testing.T, in interface{ Read([]byte) (int, error) }, args ...string) (int, string) {
	t.Helper()
	ios, _, _, errb := iostreams.Test()
	ios.In = in
	te.f.IO = ios
	return Main(context.Background(), args, te.f), errb.String()
}

// Conflicting or unusable input flags are usage errors (exit 2) before
// any provider or machine is involved.
func TestRunInputUsageErrors(t *testing.T) {
	te := newTestEnv(t)
	script := filepath.Join(te.repo, "s.sh")
	writeFile(t, script, "echo hi\n")
	for _, tc := range []struct {
		args []string
		tty  bool
		want string
	}{
		{[]string{"run", "--provider", "coder", "--script", script, "--script-stdin"}, false, "--script and --script-stdin"},
		{[]string{"run", "--provider", "coder", "--script", script, "--shell", "--", "a"}, false, "--shell runs a command line"},
		{[]string{"run", "--provider", "coder", "--script-stdin", "--sync-only"}, false, "--sync-only runs no command"},
		{[]string{"run", "--provider", "coder", "--sync-only", "--capture-stdout", "x"}, false, "no output to capture"},
		{[]string{"run", "--provider", "coder", "--capture-stdout", "same", "--capture-stderr", "./same", "--", "true"}, false, "name the same local file"},
		{[]string{"run", "--provider", "coder", "--capture-stdout", "no/such/dir/x", "--", "true"}, false, "does not exist"},
		{[]string{"run", "--provider", "coder", "--script", "missing.sh"}, false, "no such file"},
		{[]string{"run", "--provider", "coder", "--script", te.repo}, false, "not a regular file"},
		{[]string{"run", "--provider", "coder", "--script-stdin"}, true, "stdin is a terminal"},
		{[]string{"run", "--provider", "coder"}, false, "no command given"},
	} {
		var in interface{ Read([]byte) (int, error) } = &bytes.Buffer{}
		if tc.tty {
			in = &ttyIn{}
		}
		code, errOut := te.runWithStdin(t, in, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 with %q", tc.args, code, errOut, tc.want)
		}
	}
	for _, argv := range te.fake.Argvs() {
		if !strings.HasPrefix(argv, "git ") {
			t.Errorf("ran %q for a usage error", argv)
		}
	}
}

// readRunInput: a piped stdin is forwarded and a terminal one is not;
// --script reads the file relative to the working directory;
// --script-stdin takes stdin as the script (the command then reads
// /dev/null); capture paths are made absolute.
func TestReadRunInput(t *testing.T) {
	te := newTestEnv(t)
	writeFile(t, filepath.Join(te.repo, "s.sh"), "echo from file\n")
	set := func(in interface{ Read([]byte) (int, error) }) {
		ios, _, _, _ := iostreams.Test()
		ios.In = in
		te.f.IO = ios
	}

	piped := bytes.NewBufferString("data")
	set(piped)
	if _, err := readRunInput(te.f, &runOptions{captureStdout: "out.bin", captureStderr: "/no/such/dir/err.txt"}); err == nil {
		t.Fatal("a capture in a missing directory was accepted")
	}
	got, err := readRunInput(te.f, &runOptions{captureStdout: "out.bin"})
	if err != nil || got.stdin != piped || got.script != nil || got.captureStdout != filepath.Join(te.repo, "out.bin") {
		t.Fatalf("piped: %+v, %v", got, err)
	}

	set(&ttyIn{})
	if got, err = readRunInput(te.f, &runOptions{}); err != nil || got.stdin != nil {
		t.Fatalf("terminal stdin forwarded: %+v, %v", got, err)
	}

	set(bytes.NewBufferString("data"))
	got, err = readRunInput(te.f, &runOptions{script: "s.sh"})
	if err != nil || got.script == nil || string(got.script.Body) != "echo from file\n" || got.script.Name != "s.sh" || got.stdin == nil {
		t.Fatalf("--script: %+v, %v", got, err)
	}

	set(bytes.NewBufferString("echo from stdin\n"))
	got, err = readRunInput(te.f, &runOptions{scriptStdin: true})
	if err != nil || got.script == nil || string(got.script.Body) != "echo from stdin\n" || got.stdin != nil {
		t.Fatalf("--script-stdin: %+v, %v", got, err)
	}

	big := filepath.Join(te.repo, "big.sh")
	if err := os.WriteFile(big, bytes.Repeat([]byte("#"), maxScriptBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readRunInput(te.f, &runOptions{script: big}); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized script: %v", err)
	}
}
