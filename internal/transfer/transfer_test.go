package transfer

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name string
		args []string
		id   string
		want Plan
		code int // 0: no error
	}{
		{name: "push", args: []string{"a", "b", "blue:dst"}, want: Plan{Lease: "blue", Push: true, Sources: []string{"a", "b"}, Dest: "dst"}},
		{name: "pull", args: []string{"cbx_0123456789ab:x/y", "blue2:z", "."}, code: 2},
		{name: "pull one lease", args: []string{"cbx_0123456789ab:x/y", "cbx_0123456789ab:/abs", "."}, want: Plan{Lease: "cbx_0123456789ab", Sources: []string{"x/y", "/abs"}, Dest: "."}},
		{name: "owner/workspace", args: []string{"me/ws:out.txt", "here"}, want: Plan{Lease: "me/ws", Sources: []string{"out.txt"}, Dest: "here"}},
		{name: "workdir itself", args: []string{"f", "blue:"}, want: Plan{Lease: "blue", Push: true, Sources: []string{"f"}, Dest: ""}},
		{name: "with --id and :path", args: []string{"f", ":d"}, id: "blue", want: Plan{Lease: "blue", Push: true, Sources: []string{"f"}, Dest: "d"}},
		{name: "with --id and the same lease", args: []string{"blue:f", "d"}, id: "blue", want: Plan{Lease: "blue", Sources: []string{"f"}, Dest: "d"}},
		{name: "--id and another lease", args: []string{"red:f", "d"}, id: "blue", code: 2},
		{name: ":path without --id", args: []string{"f", ":d"}, code: 2},
		{name: "local names with a colon", args: []string{"./a:b", "/x:y", "blue:d"}, want: Plan{Lease: "blue", Push: true, Sources: []string{"./a:b", "/x:y"}, Dest: "d"}},
		{name: "dash names are names", args: []string{"-rf", "blue:-x"}, want: Plan{Lease: "blue", Push: true, Sources: []string{"-rf"}, Dest: "-x"}},
		{name: "both local", args: []string{"a", "b"}, code: 2},
		{name: "lease to lease", args: []string{"blue:a", "blue:b"}, code: 2},
		{name: "mixed sources", args: []string{"a", "blue:b", "c"}, code: 2},
		{name: "one operand", args: []string{"blue:a"}, code: 2},
		{name: "empty operand", args: []string{"", "blue:a"}, code: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseArgs(tt.args, tt.id)
			if tt.code != 0 {
				if exitcode.Code(err) != tt.code {
					t.Fatalf("ParseArgs(%q) = %+v, %v; want exit %d", tt.args, got, err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseArgs(%q): %v", tt.args, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseArgs(%q) = %+v, want %+v", tt.args, got, tt.want)
			}
		})
	}
}

func TestRemotePath(t *testing.T) {
	const wd = "/w/cbx_1/repo"
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "", want: wd},
		{in: ".", want: wd},
		{in: "a/b/", want: wd + "/a/b"},
		{in: "-x", want: wd + "/-x"},
		{in: "a/../b", want: wd + "/b"},
		{in: "/etc/hosts", want: "/etc/hosts"},
		{in: "/tmp/../var/", want: "/var"},
		{in: "..", bad: true},
		{in: "../repo2/x", bad: true},
		{in: "a/../../x", bad: true},
	}
	for _, tt := range tests {
		got, err := RemotePath(wd, tt.in)
		if tt.bad {
			if exitcode.Code(err) != exitcode.Usage {
				t.Errorf("RemotePath(%q) = %q, %v; want a usage error", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("RemotePath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestEscapeGlob(t *testing.T) {
	for in, want := range map[string]string{
		"plain":      "plain",
		`back\slash`: `back\slash`,
		"a*b?c[d]":   `a\*b\?c\[d]`,
	} {
		if got, err := escapeGlob(in); err != nil || got != want {
			t.Errorf("escapeGlob(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := escapeGlob(`a\b*`); exitcode.Code(err) != exitcode.Usage {
		t.Errorf("escapeGlob of a backslash and a wildcard: %v, want a usage error", err)
	}
}

// StatScript, run by a real shell, tells directories, files, symlinks
// and missing names apart, whatever the names hold.
func TestStatScript(t *testing.T) {
	d := t.TempDir()
	mk := func(rel string) string { p := filepath.Join(d, rel); writeFile(t, p, "x", 0o644); return p }
	dirp := filepath.Join(d, "a dir")
	os.Mkdir(dirp, 0o755)
	f := mk("it's a *file*")
	link := filepath.Join(d, "-link")
	os.Symlink(dirp, link)
	paths := []string{dirp, f, link, filepath.Join(d, "$(touch pwned)")}
	for _, tt := range []struct {
		follow bool
		want   []kind
	}{
		{false, []kind{dir, file, symlink, missing}},
		{true, []kind{dir, file, dir, missing}},
	} {
		out, err := exec.Command("bash", "-c", "echo profile noise; "+StatScript("", tt.follow, paths)).Output()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseStat(string(out), len(paths))
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("follow=%t: %q -> %q, %v; want %q", tt.follow, out, got, err, tt.want)
		}
	}
	if _, err := os.Stat(filepath.Join(d, "pwned")); err == nil {
		t.Error("a name was run as a command")
	}
	if _, err := ParseStat("crabbox-stat d\n", 2); err == nil {
		t.Error("ParseStat accepted too few answers")
	}
}

// localRemote is a Remote that is this machine: Output runs the line with
// bash -c, and RSH is a script that drops ssh's options and host and runs
// the rest with bash -c (as sshd would).
type localRemote struct {
	rsh   string
	lines []string
}

func newLocalRemote(t *testing.T) *localRemote {
	t.Helper()
	rsh := filepath.Join(t.TempDir(), "fake-ssh")
	script := "#!/bin/bash\nif [ \"$1\" = -l ]; then shift 2; fi\nshift\nexec bash -c \"$*\"\n"
	if err := os.WriteFile(rsh, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return &localRemote{rsh: rsh}
}

func (l *localRemote) Output(ctx context.Context, remote string) ([]byte, error) {
	l.lines = append(l.lines, remote)
	var errb bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", "-c", remote)
	cmd.Stderr = &errb
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out, &execx.ExitError{Cmd: "ssh", Code: ee.ExitCode(), Output: errb.String()}
	}
	return out, err
}

func (l *localRemote) RSH() string          { return "'" + strings.ReplaceAll(l.rsh, "'", "''") + "'" }
func (l *localRemote) Target() lease.Target { return lease.Target{User: "coder", Host: "local-test"} }

func writeFile(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func requireRsync(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Skip("rsync not installed")
	}
}

// tree maps each file under root to "mode content" (directories to their
// mode).
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		if fi.IsDir() {
			out[rel+"/"] = fi.Mode().Perm().String()
			return nil
		}
		b, _ := os.ReadFile(p)
		out[rel] = fi.Mode().String() + " " + string(b)
		return nil
	})
	return out
}

// A directory goes to the lease and back with its content and modes,
// landing the cp -r way; names that look like options, hold quotes,
// spaces or wildcards arrive literally.
func TestCopyRoundTrip(t *testing.T) {
	requireRsync(t)
	local := t.TempDir()
	wd := filepath.Join(t.TempDir(), "work", "cbx_0123456789ab", "repo")
	t.Chdir(local)
	src := filepath.Join(local, "src")
	writeFile(t, filepath.Join(src, "run.sh"), "#!/bin/sh\n", 0o755)
	writeFile(t, filepath.Join(src, "secret"), "s", 0o600)
	writeFile(t, filepath.Join(src, "sub", "it's a *name*"), "q", 0o640)
	writeFile(t, filepath.Join(src, "sub", "it's a 1name1"), "decoy", 0o644)
	writeFile(t, filepath.Join(src, "-rf"), "dash", 0o644)
	want := tree(t, src)
	rem := newLocalRemote(t)
	o := Options{Workdir: wd, Recursive: true}
	ctx := context.Background()

	// Into a missing name: that name is the copy (the workdir is made).
	if err := Copy(ctx, execx.OS{}, rem, Plan{Push: true, Sources: []string{"src"}, Dest: "dst"}, o); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, filepath.Join(wd, "dst")); !reflect.DeepEqual(got, want) {
		t.Errorf("pushed tree:\n%v\nwant\n%v", got, want)
	}
	// Onto an existing directory: inside it.
	if err := Copy(ctx, execx.OS{}, rem, Plan{Push: true, Sources: []string{"src/"}, Dest: "dst"}, o); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, filepath.Join(wd, "dst", "src")); !reflect.DeepEqual(got, want) {
		t.Errorf("pushed into a directory:\n%v\nwant\n%v", got, want)
	}
	// Back: the remote directory into a missing local name.
	if err := Copy(ctx, execx.OS{}, rem, Plan{Sources: []string{"dst/src"}, Dest: "back"}, o); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, filepath.Join(local, "back")); !reflect.DeepEqual(got, want) {
		t.Errorf("pulled tree:\n%v\nwant\n%v", got, want)
	}
	// One file with wildcards in its name, to a name starting with '-':
	// only that file (not its look-alike) arrives.
	if err := Copy(ctx, execx.OS{}, rem, Plan{Sources: []string{"dst/sub/it's a *name*"}, Dest: "-got"}, Options{Workdir: wd}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(local, "-got")); err != nil || string(b) != "q" {
		t.Errorf("pulled file: %q, %v", b, err)
	}
	// A local name starting with '-' is a file, not an option.
	if err := Copy(ctx, execx.OS{}, rem, Plan{Push: true, Sources: []string{"-got"}, Dest: filepath.Join(wd, "single")}, Options{Workdir: wd}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(wd, "single")); err != nil || string(b) != "q" {
		t.Errorf("pushed file: %q, %v", b, err)
	}
	// Several sources go inside the destination directory.
	if err := Copy(ctx, execx.OS{}, rem, Plan{Sources: []string{"single", "dst/src/secret"}, Dest: "many"}, Options{Workdir: wd}); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, filepath.Join(local, "many")); got["single"] != "-rw-r----- q" || got["secret"] != "-rw------- s" {
		t.Errorf("pulled several: %v", got)
	}
}

// What comes from the lease loses setuid and setgid bits.
func TestCopyPullDropsSetuid(t *testing.T) {
	requireRsync(t)
	local, wd := t.TempDir(), t.TempDir()
	t.Chdir(local)
	writeFile(t, filepath.Join(wd, "tool"), "x", 0o755|os.ModeSetuid)
	fi, _ := os.Stat(filepath.Join(wd, "tool"))
	if fi.Mode()&os.ModeSetuid == 0 {
		t.Skip("cannot make a setuid file here")
	}
	if err := Copy(context.Background(), execx.OS{}, newLocalRemote(t), Plan{Sources: []string{"tool"}, Dest: "tool"}, Options{Workdir: wd}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(local, "tool"))
	if err != nil || fi.Mode()&os.ModeSetuid != 0 || fi.Mode().Perm() != 0o755 {
		t.Errorf("pulled mode %v, %v; want -rwxr-xr-x", fi.Mode(), err)
	}
}

// Refusals change nothing on either side.
func TestCopyRefusals(t *testing.T) {
	local, wd := t.TempDir(), t.TempDir()
	t.Chdir(local)
	writeFile(t, filepath.Join(local, "d", "f"), "x", 0o644)
	writeFile(t, filepath.Join(local, "file"), "x", 0o644)
	writeFile(t, filepath.Join(wd, "rd", "f"), "x", 0o644)
	writeFile(t, filepath.Join(wd, "rfile"), "x", 0o644)
	fake := execx.NewFake() // no rsync may run
	tests := []struct {
		name string
		plan Plan
		rec  bool
		code int
	}{
		{"local directory without -r", Plan{Push: true, Sources: []string{"d"}, Dest: "x"}, false, 2},
		{"remote directory without -r", Plan{Sources: []string{"rd"}, Dest: "x"}, false, 2},
		{"missing local source", Plan{Push: true, Sources: []string{"nope"}, Dest: "x"}, false, 1},
		{"missing remote source", Plan{Sources: []string{"nope"}, Dest: "x"}, false, 1},
		{"outside the workdir", Plan{Sources: []string{"../x"}, Dest: "x"}, false, 2},
		{"directory onto a file", Plan{Push: true, Sources: []string{"d"}, Dest: "rfile"}, true, 1},
		{"several onto a file", Plan{Push: true, Sources: []string{"file", "d"}, Dest: "rfile"}, true, 1},
		{"remote directory onto a local file", Plan{Sources: []string{"rd"}, Dest: "file"}, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Copy(context.Background(), fake, newLocalRemote(t), tt.plan, Options{Workdir: wd, Recursive: tt.rec})
			if exitcode.Code(err) != tt.code {
				t.Errorf("Copy = %v (exit %d), want exit %d", err, exitcode.Code(err), tt.code)
			}
		})
	}
	if calls := fake.Argvs(); len(calls) != 0 {
		t.Errorf("rsync ran: %q", calls)
	}
}

func TestRsyncArgs(t *testing.T) {
	got := RsyncArgs("ssh -o X", true, true, true, []string{"coder@h:/w/a"}, "./-b")
	want := []string{"--protect-args", "-lptz", "-r", "--chmod=ug-s", "--info=progress2", "-e", "ssh -o X", "--", "coder@h:/w/a", "./-b"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("RsyncArgs = %q, want %q", got, want)
	}
	if a := remoteArg(lease.Target{User: "u", Host: "::1"}, "/p"); a != "u@[::1]:/p" {
		t.Errorf("remoteArg IPv6 = %q", a)
	}
}

func TestRsyncError(t *testing.T) {
	for _, tt := range []struct {
		code   int
		stderr string
		want   int
	}{
		{255, "ssh: connect to host h: Connection refused", exitcode.Transport},
		{12, "rsync: connection unexpectedly closed", exitcode.Transport},
		{23, "rsync: [Receiver] mkdir failed: Permission denied", exitcode.Sync},
		{127, "bash: rsync: command not found", exitcode.Sync},
	} {
		if got := exitcode.Code(rsyncError("h", tt.code, tt.stderr)); got != tt.want {
			t.Errorf("rsyncError(%d, %q) exit %d, want %d", tt.code, tt.stderr, got, tt.want)
		}
	}
}

// droppingRemote's first rsync loses its connection (ssh exits 255) until
// Shutdown, as a stalled tunnel does; Shutdown makes the next one work.
type droppingRemote struct {
	*localRemote
	flag   string
	closed int
	// forever keeps dropping after Shutdown (a tunnel that cannot come back).
	forever bool
}

func (d *droppingRemote) Shutdown() error {
	d.closed++
	if d.forever {
		return nil
	}
	return os.Remove(d.flag)
}

// A copy that lost its transport is retried once over a new tunnel (the
// old one closed first); a second loss is the error.
func TestCopyRetriesALostTransportOnce(t *testing.T) {
	requireRsync(t)
	local, wd := t.TempDir(), t.TempDir()
	t.Chdir(local)
	writeFile(t, filepath.Join(local, "f.txt"), "payload", 0o644)
	base := newLocalRemote(t)
	flag := filepath.Join(t.TempDir(), "drop")
	rsh := filepath.Join(t.TempDir(), "dropping-ssh")
	script := "#!/bin/bash\nif [ -e " + flag + " ]; then echo 'Connection reset by peer' >&2; exit 255; fi\nexec " + base.rsh + " \"$@\"\n"
	if err := os.WriteFile(rsh, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rem := &droppingRemote{localRemote: &localRemote{rsh: rsh}, flag: flag}
	var retried []error
	o := Options{Workdir: wd, Retrying: func(err error) { retried = append(retried, err) }}
	if err := Copy(context.Background(), execx.OS{}, rem, Plan{Push: true, Sources: []string{"f.txt"}, Dest: "f.txt"}, o); err != nil {
		t.Fatalf("copy after one lost transport: %v", err)
	}
	if len(retried) != 1 || exitcode.Code(retried[0]) != exitcode.Transport || rem.closed != 1 {
		t.Fatalf("retries %v, closed %d; want one transport retry after one Shutdown", retried, rem.closed)
	}
	if b, err := os.ReadFile(filepath.Join(wd, "f.txt")); err != nil || string(b) != "payload" {
		t.Errorf("copied file %q, %v", b, err)
	}
	// A tunnel that cannot come back: exit 7 after exactly one retry.
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rem.forever, retried = true, nil
	err := Copy(context.Background(), execx.OS{}, rem, Plan{Push: true, Sources: []string{"f.txt"}, Dest: "g.txt"}, o)
	if exitcode.Code(err) != exitcode.Transport || len(retried) != 1 {
		t.Errorf("err %v (exit %d), retries %d; want exit 7 after one retry", err, exitcode.Code(err), len(retried))
	}
}
