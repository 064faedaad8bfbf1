//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// inputTimeout bounds one input/capture run on a warm lease.
const inputTimeout = 2 * time.Minute

// crabboxStdin runs crabbox (or, with shell, a bash pipeline whose $0 is
// the crabbox binary) with stdin in, bounded by timeout.
func (w *world) crabboxStdin(in io.Reader, timeout time.Duration, extra []string, prog []string) result {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog[0], prog[1:]...)
	cmd.Dir = w.repo
	cmd.Env = append(append([]string(nil), w.env...), extra...)
	cmd.Stdin = in
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		w.t.Fatalf("%s did not end within %s\nstderr:\n%s", shortArgs(prog), timeout, r.stderr)
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		w.t.Fatalf("%s: %v", shortArgs(prog), err)
	}
	w.t.Logf("$ %s -> exit %d\n%.2000s%s", shortArgs(prog), r.code, r.stdout, r.stderr)
	return r
}

func fileSHA(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Input and raw captures, for every provider: a 10 MB stdin streams to the
// command byte for byte; `cat` with stdin at EOF ends at once, and so does
// a command that leaves an open stdin unread; a forwarded variable reaches
// a command fed by stdin; --capture-stdout of 20 MB of binary output equals
// the remote stream; --script and --script-stdin with odd characters and
// arguments; colliding captures are refused before anything runs.
func TestRunInputAndCaptures(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			w := b.world(t)
			id := b.warm(w, "e2e-input-"+b.name)
			t.Cleanup(func() { w.crabbox("stop", id) })
			tmp := t.TempDir()

			// 10 MB of random bytes through a pipe: the remote hash is the local file's.
			local := filepath.Join(tmp, "local.bin")
			r := w.crabboxStdin(nil, inputTimeout, nil, []string{"bash", "-c",
				`head -c 10000000 /dev/urandom | tee "$1" | "$0" run --id "$2" -- sha256sum`, lab.Crabbox, local, id})
			wantCode(t, r, 0, "piped sha256sum")
			if st, err := os.Stat(local); err != nil || st.Size() != 10000000 {
				t.Fatalf("local.bin: %v", err)
			}
			if want := fileSHA(t, local); !strings.HasPrefix(r.stdout, want+" ") {
				t.Errorf("remote sha256sum %q, want %s", r.stdout, want)
			}

			// cat with stdin at EOF ends at once; positive control: it ran.
			r = w.crabboxStdin(strings.NewReader(""), inputTimeout, nil, []string{lab.Crabbox, "run", "--id", id, "--", "sh", "-c", "cat; echo cat-ended"})
			wantCode(t, r, 0, "cat at EOF")
			if strings.TrimSpace(r.stdout) != "cat-ended" {
				t.Errorf("cat at EOF: stdout %q", r.stdout)
			}

			// An open stdin nobody writes to: a command that does not read it
			// still ends (and the run exits 0).
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			r = w.crabboxStdin(pr, inputTimeout, nil, []string{lab.Crabbox, "run", "--id", id, "--", "echo", "did-not-wait"})
			pw.Close()
			pr.Close()
			wantCode(t, r, 0, "open stdin, unread")
			if strings.TrimSpace(r.stdout) != "did-not-wait" {
				t.Errorf("open stdin: stdout %q", r.stdout)
			}

			// A forwarded variable still reaches a command fed by stdin.
			r = w.crabboxStdin(strings.NewReader("fed\n"), inputTimeout, []string{"E2E_FWD=it's $forwarded"},
				[]string{lab.Crabbox, "run", "--id", id, "--allow-env", "E2E_FWD", "--", "sh", "-c", `cat; printf '%s\n' "$E2E_FWD"`})
			wantCode(t, r, 0, "env with stdin")
			if r.stdout != "fed\nit's $forwarded\n" {
				t.Errorf("env with stdin: stdout %q", r.stdout)
			}

			// 20 MB of binary stdout into a local file: the same bytes as the
			// remote stream (tee'd on the remote side), nothing on the terminal.
			remoteCopy := filepath.Join(tmp, "remote.bin")
			capOut := filepath.Join(tmp, "captured.bin")
			r = w.crabboxStdin(nil, inputTimeout, nil, []string{lab.Crabbox, "run", "--id", id, "--capture-stdout", capOut, "--",
				"sh", "-c", "head -c 20000000 /dev/urandom | tee " + remoteCopy + "; echo still-on-stderr >&2"})
			wantCode(t, r, 0, "capture-stdout")
			if st, err := os.Stat(capOut); err != nil || st.Size() != 20000000 || st.Mode().Perm() != 0o600 {
				t.Fatalf("capture: %+v %v", st, err)
			}
			if got, want := fileSHA(t, capOut), fileSHA(t, remoteCopy); got != want {
				t.Errorf("capture sha256 %s, remote stream %s", got, want)
			}
			if r.stdout != "" || !strings.Contains(r.stderr, "still-on-stderr") ||
				!strings.Contains(r.stderr, "stdout captured to "+capOut+" (20000000 bytes)") {
				t.Errorf("capture run: stdout %d bytes, stderr:\n%s", len(r.stdout), r.stderr)
			}
			if logs := w.must("logs", runID(t, r)); !strings.Contains(logs.stdout, "stdout captured to "+capOut+" (20000000 bytes)") || len(logs.stdout) > 100000 {
				t.Errorf("run log (%d bytes) lacks the capture note or holds the stream", len(logs.stdout))
			}

			// --script: odd characters in the name, the body and the args.
			script := filepath.Join(tmp, "odd 'name' $x.sh")
			body := "#!/usr/bin/env bash\n# it's \"odd\" `here` $(not run) \\ ✓\nprintf '<%s>' \"$@\"; echo; echo \"argc=$# pwd=$PWD\"\ncase $0 in */.crabbox/scripts/*) echo uploaded;; esac\n"
			if err := os.WriteFile(script, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			canary := filepath.Join(tmp, "pwned")
			args := []string{"", "two words", "it's", "$(touch " + canary + ")", "-n"}
			r = w.crabboxStdin(nil, inputTimeout, nil, append([]string{lab.Crabbox, "run", "--id", id, "--script", script, "--"}, args...))
			wantCode(t, r, 0, "--script")
			want := "<><two words><it's><$(touch " + canary + ")><-n>\nargc=5 pwd=" + b.remoteDir(w, id) + "\nuploaded\n"
			if r.stdout != want {
				t.Errorf("--script stdout %q\nwant %q", r.stdout, want)
			}
			if _, err := os.Stat(canary); err == nil {
				t.Error("an argument of the script was executed")
			}

			// --script-stdin: the script comes from stdin; the command reads /dev/null.
			r = w.crabboxStdin(strings.NewReader("echo \"from stdin: $1\"; cat; echo end\n"), inputTimeout, nil,
				[]string{lab.Crabbox, "run", "--id", id, "--script-stdin", "--", "a'b"})
			wantCode(t, r, 0, "--script-stdin")
			if r.stdout != "from stdin: a'b\nend\n" {
				t.Errorf("--script-stdin stdout %q", r.stdout)
			}

			// Ctrl-C while the command blocks reading an open stdin: exit 130,
			// the remote process gone.
			marker := filepath.Join(tmp, "cat.pid")
			pr, pw, err = os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(lab.Crabbox, "run", "--id", id, "--", "sh", "-c", "echo $$ > "+marker+"; exec cat")
			cmd.Dir, cmd.Env, cmd.Stdin = w.repo, w.env, pr
			var ierr syncBuffer
			cmd.Stderr = &ierr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pr.Close()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			deadline := time.Now().Add(inputTimeout)
			var pid []byte
			for len(strings.TrimSpace(string(pid))) == 0 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				pid, _ = os.ReadFile(marker)
			}
			if len(strings.TrimSpace(string(pid))) == 0 {
				cmd.Process.Kill()
				t.Fatalf("the remote cat never started\n%s", ierr.String())
			}
			pw.Write([]byte("partial input\n"))
			cmd.Process.Signal(os.Interrupt)
			select {
			case err = <-done:
			case <-time.After(inputTimeout):
				cmd.Process.Kill()
				t.Fatalf("crabbox did not end after Ctrl-C\n%s", ierr.String())
			}
			pw.Close()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 130 {
				t.Errorf("interrupted run: %v, want exit 130\n%s", err, ierr.String())
			}
			if _, err := os.Stat("/proc/" + strings.TrimSpace(string(pid))); err == nil {
				t.Errorf("remote cat %s survived the interrupt", strings.TrimSpace(string(pid)))
			}

			// Two captures naming one file: exit 2 before anything runs.
			same := filepath.Join(tmp, "same.txt")
			r = w.crabboxStdin(nil, inputTimeout, nil, []string{lab.Crabbox, "run", "--id", id, "--capture-stdout", same, "--capture-stderr", same, "--", "true"})
			wantCode(t, r, 2, "colliding captures")
			if !strings.Contains(r.stderr, "name the same local file") || strings.Contains(r.stderr, "run run_") {
				t.Errorf("colliding captures: stderr\n%s", r.stderr)
			}
		})
	}
}
