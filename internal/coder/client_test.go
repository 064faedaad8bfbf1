package coder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

func newClient(f *execx.Fake) (*Client, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &Client{Runner: f, CLI: "coder", Stdout: &out, Stderr: &errb}, &out, &errb
}

func argvs(f *execx.Fake) [][]string {
	var out [][]string
	for _, c := range f.Calls() {
		out = append(out, append([]string{c.Name}, c.Args...))
	}
	return out
}

func assertCalls(t *testing.T, f *execx.Fake, want ...[]string) {
	t.Helper()
	got := argvs(f)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("calls:\n got  %q\n want %q", got, want)
	}
	for _, c := range f.Calls() {
		if len(c.Env) != 0 {
			t.Errorf("%s: env %q, want none (inherit untouched)", c.Argv(), c.Env)
		}
		for _, a := range c.Args {
			l := strings.ToLower(a)
			if strings.Contains(l, "token") || strings.Contains(l, "session") || strings.Contains(l, "secret") {
				t.Errorf("%s: secret-looking argument %q", c.Argv(), a)
			}
		}
	}
}

func TestCreateArgs(t *testing.T) {
	got := CreateArgs("crabbox-blue", CreateOptions{
		Template:             "go-dev",
		Preset:               "large",
		NoWait:               true,
		UseParameterDefaults: true,
		Parameters:           []string{" region=iad ", "size=large", "  "},
		RichParameterFile:    "/tmp/params.yaml",
	})
	want := strings.Fields("create --yes --template go-dev --preset large --no-wait --use-parameter-defaults --parameter region=iad --parameter size=large --rich-parameter-file /tmp/params.yaml crabbox-blue")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	minimal := CreateArgs("crabbox-blue", CreateOptions{Template: "go-dev"})
	if want := strings.Fields("create --yes --template go-dev crabbox-blue"); !reflect.DeepEqual(minimal, want) {
		t.Errorf("minimal %q", minimal)
	}
	for _, args := range [][]string{got, minimal} {
		for _, a := range args {
			if a == "--wait" {
				t.Error("--wait on create")
			}
		}
	}
}

func TestCreateStreamsToStderr(t *testing.T) {
	f := execx.NewFake().On("coder create", execx.Reply{Stdout: "building...\n", Stderr: "warn\n"})
	c, out, errb := newClient(f)
	opts := CreateOptions{Template: "go-dev", Preset: "large", NoWait: true, UseParameterDefaults: true,
		Parameters: []string{"region=iad", "size=large"}, RichParameterFile: "/tmp/params.yaml"}
	if err := c.Create(context.Background(), "crabbox-blue", opts); err != nil {
		t.Fatal(err)
	}
	assertCalls(t, f, append([]string{"coder"}, strings.Fields("create --yes --template go-dev --preset large --no-wait --use-parameter-defaults --parameter region=iad --parameter size=large --rich-parameter-file /tmp/params.yaml crabbox-blue")...))
	if out.Len() != 0 {
		t.Errorf("stdout got %q", out)
	}
	if !strings.Contains(errb.String(), "building...") || !strings.Contains(errb.String(), "warn") {
		t.Errorf("stderr got %q", errb)
	}
}

func TestCreateErrors(t *testing.T) {
	f := execx.NewFake().On("coder create", execx.Reply{Stderr: "build failed", ExitCode: 3})
	c, _, _ := newClient(f)
	err := c.Create(context.Background(), "crabbox-blue", CreateOptions{Template: "go-dev"})
	if err == nil || err.Error() != "coder create workspace crabbox-blue failed: build failed" || exitcode.Code(err) != 3 {
		t.Errorf("got %v (code %d)", err, exitcode.Code(err))
	}
	// No template → exit 2 before any call.
	f2 := execx.NewFake()
	c2, _, _ := newClient(f2)
	err = c2.Create(context.Background(), "crabbox-blue", CreateOptions{})
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "requires --coder-template") {
		t.Errorf("got %v", err)
	}
	for _, bad := range []string{"", "--all", "Bad Name"} {
		if err := c2.Create(context.Background(), bad, CreateOptions{Template: "t"}); exitcode.Code(err) != exitcode.Usage {
			t.Errorf("name %q: %v", bad, err)
		}
	}
	if len(f2.Calls()) != 0 {
		t.Errorf("calls %q", f2.Argvs())
	}
}

func TestWhoAmIAskedOnce(t *testing.T) {
	f := execx.NewFake().On("coder whoami -o json", execx.Reply{Stdout: string(readTestdata(t, "whoami.json"))})
	c, _, _ := newClient(f)
	for i := 0; i < 2; i++ {
		w, err := c.WhoAmI(context.Background())
		if err != nil || w.Username != "admin" || w.URL != "http://127.0.0.1:17080" {
			t.Fatalf("call %d: %+v %v", i, w, err)
		}
	}
	assertCalls(t, f, []string{"coder", "whoami", "-o", "json"})

	// Concurrent callers share the single call.
	f = execx.NewFake().On("coder whoami -o json", execx.Reply{Stdout: `{"username":"alice"}`})
	c, _, _ = newClient(f)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); c.WhoAmI(context.Background()) }()
	}
	wg.Wait()
	if n := len(f.Calls()); n != 1 {
		t.Errorf("%d whoami calls", n)
	}
}

// TestCLIExitIsExternal: a coder CLI call that exits N is an
// *exitcode.ExternalError ("coder <verb>", N) that exits N, never a
// refusal; one that did not exit (a timeout) is a plain exit-1 error.
func TestCLIExitIsExternal(t *testing.T) {
	f := execx.NewFake().On("coder stop", execx.Reply{Stderr: "usage error", ExitCode: 2})
	c, _, _ := newClient(f)
	err := c.Stop(context.Background(), "alice/ws")
	var ext *exitcode.ExternalError
	if !errors.As(err, &ext) || ext.Program != "coder stop" || ext.Code != 2 {
		t.Fatalf("Stop error %v (%#v), want coder stop exiting 2", err, ext)
	}
	if exitcode.Code(err) != 2 || exitcode.IsRefused(err) {
		t.Errorf("code %d, refused %v", exitcode.Code(err), exitcode.IsRefused(err))
	}
	var ce *CLIError
	if !errors.As(err, &ce) || ce.Code != 2 || !strings.Contains(err.Error(), "usage error") {
		t.Errorf("CLIError lost: %v", err)
	}

	f = execx.NewFake().On("coder whoami", execx.Reply{Err: &execx.TimeoutError{Cmd: "coder whoami", Timeout: time.Second}})
	c, _, _ = newClient(f)
	_, err = c.WhoAmI(context.Background())
	if errors.As(err, &ext) || exitcode.Code(err) != exitcode.Failure {
		t.Errorf("timeout: %v is external or not exit 1", err)
	}
}

func TestWhoAmIFailure(t *testing.T) {
	f := execx.NewFake().On("coder whoami -o json", execx.Reply{
		Stderr: "You are not logged in. Try logging in using 'coder login <url>'.", ExitCode: 1})
	c, _, _ := newClient(f)
	_, err := c.WhoAmI(context.Background())
	var ce *CLIError
	if !errors.As(err, &ce) || ClassifyAuth(ce.Output) != AuthMissingLogin {
		t.Fatalf("got %v", err)
	}
	if !strings.HasPrefix(err.Error(), "coder whoami -o json failed: You are not logged in") {
		t.Errorf("message %q", err)
	}
	if _, err2 := c.WhoAmI(context.Background()); err2 == nil {
		t.Error("cached failure lost")
	}
	if n := len(f.Calls()); n != 1 {
		t.Errorf("%d calls", n)
	}
	// A cancelled call is not remembered.
	f = execx.NewFake().On("coder whoami -o json", execx.Reply{Stdout: `{"username":"alice"}`})
	c, _, _ = newClient(f)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.WhoAmI(ctx); err == nil {
		t.Fatal("cancelled call succeeded")
	}
	if w, err := c.WhoAmI(context.Background()); err != nil || w.Username != "alice" {
		t.Errorf("after cancel: %+v %v", w, err)
	}
}

func TestList(t *testing.T) {
	sample := string(readTestdata(t, "list.json"))
	f := execx.NewFake().
		On("coder list -o json", execx.Reply{Stdout: sample, Stderr: "some warning on stderr"}).
		On("coder list --all -o json", execx.Reply{Stdout: "No workspaces found!"})
	c, _, _ := newClient(f)
	own, err := c.List(context.Background(), false)
	if err != nil || len(own) != 2 || own[0].Name != "ws1" {
		t.Fatalf("own: %v %v", own, err)
	}
	all, err := c.List(context.Background(), true)
	if err != nil || len(all) != 0 {
		t.Fatalf("all: %v %v", all, err)
	}
	assertCalls(t, f, []string{"coder", "list", "-o", "json"}, []string{"coder", "list", "--all", "-o", "json"})
}

func TestListErrors(t *testing.T) {
	f := execx.NewFake().On("coder list -o json", execx.Reply{Stderr: "inventory unavailable", ExitCode: 4})
	c, _, _ := newClient(f)
	_, err := c.List(context.Background(), false)
	if err == nil || err.Error() != "coder list -o json failed: inventory unavailable" || exitcode.Code(err) != 4 {
		t.Errorf("got %v (code %d)", err, exitcode.Code(err))
	}
	f = execx.NewFake().On("coder list --all -o json", execx.Reply{Stdout: "<html>"})
	c, _, _ = newClient(f)
	_, err = c.List(context.Background(), true)
	if exitcode.Code(err) != exitcode.NotFound || !strings.HasPrefix(err.Error(), "coder list returned invalid JSON: ") {
		t.Errorf("got %v", err)
	}
	// A runner error without output (binary missing) keeps its text, exit 1.
	f = execx.NewFake().On("coder list -o json", execx.Reply{Err: errors.New(`exec: "coder": executable file not found in $PATH`)})
	c, _, _ = newClient(f)
	_, err = c.List(context.Background(), false)
	if exitcode.Code(err) != 1 || !strings.Contains(err.Error(), "coder list -o json failed: exec: \"coder\": executable file not found") {
		t.Errorf("got %v", err)
	}
}

func TestTimeouts(t *testing.T) {
	var seen []time.Duration
	r := runnerFunc(func(ctx context.Context, cmd execx.Cmd) (execx.Result, error) {
		seen = append(seen, cmd.Timeout)
		if cmd.Args[0] == "stop" {
			return execx.Result{ExitCode: -1}, &execx.TimeoutError{Cmd: cmd.String(), Timeout: cmd.Timeout}
		}
		return execx.Result{Stdout: []byte("Coder v2.27.0+abc\nhttps://github.com/coder/coder\n")}, nil
	})
	c := &Client{Runner: r}
	v, err := c.Version(context.Background())
	if err != nil || v != "Coder v2.27.0+abc" {
		t.Errorf("version %q %v", v, err)
	}
	err = c.Stop(context.Background(), "crabbox-blue")
	if err == nil || exitcode.Code(err) != 1 || !strings.Contains(err.Error(), "coder stop workspace crabbox-blue failed: coder stop --yes crabbox-blue: timed out after 15m0s") {
		t.Errorf("stop: %v", err)
	}
	var te *execx.TimeoutError
	if !errors.As(err, &te) {
		t.Error("timeout error not reachable with errors.As")
	}
	c.Timeout, c.OpTimeout = time.Second, time.Minute
	c.Version(context.Background())
	c.Stop(context.Background(), "x")
	want := []time.Duration{DefaultTimeout, DefaultOpTimeout, time.Second, time.Minute}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("timeouts %v, want %v", seen, want)
	}
}

type runnerFunc func(context.Context, execx.Cmd) (execx.Result, error)

func (f runnerFunc) Run(ctx context.Context, c execx.Cmd) (execx.Result, error) { return f(ctx, c) }

func TestDefaultCLI(t *testing.T) {
	f := execx.NewFake().On("coder version", execx.Reply{Stdout: "Coder v2.27.0\n"})
	c := &Client{Runner: f}
	if _, err := c.Version(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertCalls(t, f, []string{"coder", "version"})

	f = execx.NewFake().On("/opt/Coder CLI/coder version", execx.Reply{ExitCode: 127, Stderr: "not found"})
	c = &Client{Runner: f, CLI: "/opt/Coder CLI/coder"}
	_, err := c.Version(context.Background())
	if err == nil || exitcode.Code(err) != 127 || err.Error() != "coder version failed: not found" {
		t.Errorf("got %v", err)
	}
	if got := f.Calls()[0].Name; got != "/opt/Coder CLI/coder" {
		t.Errorf("name %q", got)
	}
}

func TestLifecycle(t *testing.T) {
	f := execx.NewFake().
		On("coder start --yes alice/shared", execx.Reply{Stdout: "started"}).
		On("coder stop --yes crabbox-blue", execx.Reply{Stderr: "permission denied", ExitCode: 2}).
		On("coder delete --yes crabbox-blue", execx.Reply{Stdout: "", Stderr: `Workspace "crabbox-blue" does not exist`, ExitCode: 1})
	c, out, errb := newClient(f)
	ctx := context.Background()
	if err := c.Start(ctx, "alice/shared"); err != nil {
		t.Fatal(err)
	}
	err := c.Stop(ctx, "crabbox-blue")
	if err == nil || err.Error() != "coder stop workspace crabbox-blue failed: permission denied" || exitcode.Code(err) != 2 || IsNotFound(err) {
		t.Errorf("stop: %v (code %d)", err, exitcode.Code(err))
	}
	err = c.Delete(ctx, "crabbox-blue")
	if err == nil || !strings.HasPrefix(err.Error(), "coder delete workspace crabbox-blue failed: ") || exitcode.Code(err) != 1 || !IsNotFound(err) {
		t.Errorf("delete: %v (code %d)", err, exitcode.Code(err))
	}
	assertCalls(t, f,
		[]string{"coder", "start", "--yes", "alice/shared"},
		[]string{"coder", "stop", "--yes", "crabbox-blue"},
		[]string{"coder", "delete", "--yes", "crabbox-blue"})
	if out.Len() != 0 || !strings.Contains(errb.String(), "started") || !strings.Contains(errb.String(), "permission denied") {
		t.Errorf("stdout %q stderr %q", out, errb)
	}
	for _, bad := range []string{"", "  ", "--all", "-h", "a b"} {
		if err := c.Stop(ctx, bad); exitcode.Code(err) != exitcode.Usage {
			t.Errorf("ref %q: %v", bad, err)
		}
	}
	if len(f.Calls()) != 3 {
		t.Errorf("bad refs reached the CLI: %q", f.Argvs())
	}
}

func TestLongErrorOutputIsTailed(t *testing.T) {
	long := strings.Repeat("line of build log\n", 1000) + "error: the real cause"
	f := execx.NewFake().On("coder start", execx.Reply{Stderr: long, ExitCode: 1})
	c := &Client{Runner: f}
	err := c.Start(context.Background(), "x")
	if err == nil || len(err.Error()) > maxErrOutput+200 || !strings.HasSuffix(err.Error(), "error: the real cause") {
		t.Errorf("len %d: %.200s", len(err.Error()), err)
	}
}

func TestIsNotFound(t *testing.T) {
	yes := []string{"workspace not found", "Workspace \"x\" does not exist", "No such workspace", "unknown workspace x", "NOT FOUND"}
	no := []string{"permission denied", "connection refused", ""}
	cliErr := func(code int, out string) error {
		return exitcode.New(1, &CLIError{Msg: "coder stop workspace x failed", Code: code, Output: out})
	}
	for _, s := range yes {
		if !IsNotFound(cliErr(1, s)) {
			t.Errorf("%q: want true", s)
		}
		// Only the Coder CLI's own answer counts: not a plain error, not a
		// missing binary or a shell's 127.
		if IsNotFound(errors.New(s)) || IsNotFound(cliErr(127, s)) || IsNotFound(cliErr(-1, s)) {
			t.Errorf("%q: want false outside a CLI answer", s)
		}
	}
	for _, s := range no {
		if IsNotFound(cliErr(1, s)) {
			t.Errorf("%q: want false", s)
		}
	}
	if IsNotFound(nil) {
		t.Error("nil")
	}
	wrapped := exitcode.New(1, &CLIError{Msg: "coder stop workspace x failed", Code: 1, Output: "Resource not found"})
	if !IsNotFound(wrapped) {
		t.Error("wrapped")
	}
}

func TestClassifyAuth(t *testing.T) {
	cases := map[string]string{
		"You are not logged in. Try logging in using 'coder login <url>'.": AuthMissingLogin,
		"error: Not Authenticated": AuthMissingLogin,
		"no active session":        AuthMissingLogin,
		"Login required":           AuthMissingLogin,
		"please log in first":      AuthMissingLogin,
		// coder v2.27 with CODER_URL set and no, an unknown or an expired
		// session token (the server's 401):
		"error: GET http://127.0.0.1:3000/api/v2/users/me: unexpected status code 401: You are signed out or your session has expired. Please sign in again to continue.\n\tError: API key is invalid.": AuthMissingLogin,
		"Try logging in using 'coder login'. your session has expired":       AuthMissingLogin,
		"unexpected status code 500: Internal error fetching API key by id.": AuthFailed,
		"unexpected status code 403: Forbidden":                              AuthFailed,
		"dial tcp 127.0.0.1:1: connect: connection refused":                  AuthFailed,
		"dial tcp: connection refused":                                       AuthFailed,
		"":                                                                   AuthFailed,
	}
	for in, want := range cases {
		if got := ClassifyAuth(in); got != want {
			t.Errorf("ClassifyAuth(%q) = %q, want %q", in, got, want)
		}
	}
	if AuthMissingLogin != "missing_login" || AuthFailed != "auth_failed" {
		t.Error("constants")
	}
}

// With LogDir set, a build's full output goes to a 0600 file (dir 0700)
// and not to Stderr when Stderr is nil; a failure's error keeps only the
// last lines and names the file. Parameter values are not recorded.
func TestStreamKeepsBuildLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "coder", "logs")
	long := strings.Repeat("Terraform planning line\n", 50) + "error: the real cause\n"
	f := execx.NewFake().
		On("coder create", execx.Reply{Stdout: "==> Queued\n", Stderr: "Terraform 1.9\n"}).
		On("coder start --yes admin/crabbox-blue", execx.Reply{Stderr: long, ExitCode: 1})
	c := &Client{Runner: f, LogDir: dir}
	if err := c.Create(context.Background(), "crabbox-blue", CreateOptions{Template: "t", Parameters: []string{"api_key=s3cret"}}); err != nil {
		t.Fatal(err)
	}
	err := c.Start(context.Background(), "admin/crabbox-blue")
	var ce *CLIError
	if !errors.As(err, &ce) || ce.LogPath == "" || exitcode.Code(err) != 1 {
		t.Fatalf("start error = %v", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "error: the real cause") || !strings.Contains(msg, "full coder output: "+ce.LogPath) ||
		strings.Count(msg, "Terraform planning line") > logTailLines {
		t.Errorf("error = %q", msg)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("log dir: %v %v", fi, err)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	if len(logs) != 2 {
		t.Fatalf("logs = %v", logs)
	}
	for _, p := range logs {
		fi, _ := os.Stat(p)
		b, _ := os.ReadFile(p)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", p, fi.Mode())
		}
		if strings.Contains(string(b), "s3cret") {
			t.Errorf("%s records a parameter value:\n%s", p, b)
		}
		switch base := filepath.Base(p); {
		case strings.HasPrefix(base, "crabbox-blue-create-"):
			if !strings.Contains(string(b), "==> Queued") || !strings.Contains(string(b), "Terraform 1.9") || !strings.Contains(string(b), "api_key=…") {
				t.Errorf("create log:\n%s", b)
			}
		case strings.HasPrefix(base, "crabbox-blue-start-"):
			if p != ce.LogPath || strings.Count(string(b), "Terraform planning line") != 50 || !strings.Contains(string(b), "the real cause") {
				t.Errorf("start log %s (error names %s):\n%s", p, ce.LogPath, b)
			}
		default:
			t.Errorf("unexpected log %s", p)
		}
	}
}

// A log dir that cannot be made does not stop the build; the error then
// carries the output itself.
func TestStreamWithoutUsableLogDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f := execx.NewFake().On("coder stop", execx.Reply{Stderr: "boom", ExitCode: 1})
	c := &Client{Runner: f, LogDir: filepath.Join(file, "logs")}
	err := c.Stop(context.Background(), "x")
	if err == nil || err.Error() != "coder stop workspace x failed: boom" {
		t.Errorf("got %v", err)
	}
}

func TestPruneLogs(t *testing.T) {
	dir := t.TempDir()
	base := time.Now().Add(-time.Hour)
	for i := 0; i < 5; i++ {
		p := filepath.Join(dir, fmt.Sprintf("w-stop-%d.log", i))
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, base.Add(time.Duration(i)*time.Minute), base.Add(time.Duration(i)*time.Minute))
	}
	pruneLogs(dir, 2)
	left, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	if len(left) != 2 || filepath.Base(left[0]) != "w-stop-3.log" || filepath.Base(left[1]) != "w-stop-4.log" {
		t.Errorf("left = %v", left)
	}
}

func TestIsBuildActive(t *testing.T) {
	active := exitcode.New(1, &CLIError{Msg: "coder start workspace x failed", Code: 1,
		Output: "create workspace build: POST http://127.0.0.1/api/v2/workspaces/x/builds: unexpected status code 409: A workspace build is already active."})
	if !IsBuildActive(active) {
		t.Error("409 already active: want true")
	}
	for _, err := range []error{
		nil,
		errors.New("A workspace build is already active."), // not the CLI's answer
		exitcode.New(1, &CLIError{Msg: "coder start workspace x failed", Code: 1, Output: "connection refused"}),
		exitcode.New(1, &CLIError{Msg: "coder start workspace x failed", Code: 127, Output: "A workspace build is already active."}),
	} {
		if IsBuildActive(err) {
			t.Errorf("%v: want false", err)
		}
	}
}
