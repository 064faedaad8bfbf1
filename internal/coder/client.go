package coder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/iostreams"
)

// Default time limits for Coder CLI calls.
const (
	DefaultTimeout   = 60 * time.Second // captured calls: version, whoami, list
	DefaultOpTimeout = 15 * time.Minute // create, start, stop, delete
	DefaultCLI       = "coder"

	// maxErrOutput caps how much CLI output an error message carries (the
	// tail is kept: that is where the CLI says what went wrong).
	maxErrOutput = 4096
)

// Client runs the local Coder CLI. It never puts a token on argv and
// passes the environment through untouched (CODER_URL, CODER_SESSION_TOKEN
// and the CLI's config dir keep working as the user set them).
type Client struct {
	Runner execx.Runner
	CLI    string // path or name of the coder binary; "" means "coder"
	// Stdout and Stderr receive streamed operations. Create, start, stop and
	// delete write both of the CLI's streams to Stderr, because crabbox
	// keeps its stdout for primary results; no current operation writes to
	// Stdout. A nil Stderr means the output is only captured.
	Stdout, Stderr io.Writer
	// LogDir, when set, keeps the full output of every create, start, stop
	// and delete in its own 0600 file there (the dir is made 0700), named
	// <workspace>-<verb>-<UTC time>-<random>.log. A failed operation's
	// error names the file (CLIError.LogPath). A log that cannot be
	// written is skipped: the operation still runs.
	LogDir    string
	Timeout   time.Duration // per captured call; 0 means DefaultTimeout
	OpTimeout time.Duration // create/start/stop/delete; 0 means DefaultOpTimeout
	// Cache, when set, remembers whoami across processes for the same
	// Coder session (see WhoAmICache).
	Cache *WhoAmICache

	mu       sync.Mutex
	whoami   *WhoAmI
	whoamiEr error
	asked    bool
}

// CLIError is a failed Coder CLI call. When the CLI exited with a code it
// is returned wrapped in an *exitcode.ExternalError ("coder <verb>" and the
// code, which crabbox exits with), else in an *exitcode.Error (exit 1).
type CLIError struct {
	Msg     string // e.g. "coder list -o json failed"
	Code    int    // the CLI's exit code (-1 when it did not exit normally)
	Output  string // combined output, trimmed (may be a tail)
	Err     error  // the runner's error
	LogPath string // file holding the full output ("" when none was kept)
}

func (e *CLIError) Error() string {
	detail := e.Output
	if detail == "" && e.Err != nil {
		detail = e.Err.Error()
	}
	msg := e.Msg
	if detail != "" {
		msg += ": " + detail
	}
	if e.LogPath != "" {
		msg += "\nfull coder output: " + e.LogPath
	}
	return msg
}

func (e *CLIError) Unwrap() error { return e.Err }

func (c *Client) cli() string {
	if s := strings.TrimSpace(c.CLI); s != "" {
		return c.CLI
	}
	return DefaultCLI
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c *Client) opTimeout() time.Duration {
	if c.OpTimeout > 0 {
		return c.OpTimeout
	}
	return DefaultOpTimeout
}

// capture runs a quick CLI call and returns its stdout. On failure the
// error reads "<msg>: <output>" and carries the CLI's exit code.
func (c *Client) capture(ctx context.Context, msg string, args ...string) ([]byte, error) {
	res, err := c.Runner.Run(ctx, execx.Cmd{Name: c.cli(), Args: args, Timeout: c.timeout()})
	if err != nil {
		return nil, cliError(msg, args, res, err)
	}
	return res.Stdout, nil
}

// stream runs a slow CLI operation (a workspace build) with both streams
// going to c.Stderr (when set) and to a log file in c.LogDir (when set);
// logName ("<workspace>-<verb>") names the file.
func (c *Client) stream(ctx context.Context, msg, logName string, args ...string) error {
	cmd := execx.Cmd{Name: c.cli(), Args: args, Timeout: c.opTimeout()}
	var sinks []io.Writer
	if c.Stderr != nil {
		sinks = append(sinks, c.Stderr)
	}
	logf := c.openLog(logName)
	if logf != nil {
		defer logf.Close()
		fmt.Fprintf(logf, "$ %s %s\n", c.cli(), strings.Join(redactParams(args), " "))
		sinks = append(sinks, logf)
	}
	if len(sinks) > 0 {
		w := iostreams.SyncWriter(io.MultiWriter(sinks...)) // two stream copiers
		cmd.Stdout, cmd.Stderr = w, w
	}
	res, err := c.Runner.Run(ctx, cmd)
	if logf != nil {
		status := "exit 0"
		var ee *execx.ExitError
		switch {
		case errors.As(err, &ee):
			status = fmt.Sprintf("exit %d", ee.Code)
		case err != nil:
			status = "failed: " + execx.FirstLine(err.Error())
		}
		fmt.Fprintf(logf, "\n# %s\n", status)
	}
	if err != nil {
		e := cliError(msg, args, res, err)
		if logf != nil {
			var ce *CLIError
			if errors.As(e, &ce) {
				ce.LogPath = logf.Name()
				// The full output is in the file; the error keeps the
				// last lines, where the CLI says what went wrong.
				ce.Output = tailLines(ce.Output, logTailLines)
			}
		}
		return e
	}
	return nil
}

// redactParams hides template parameter values (they may be secrets) in
// the command line a log file records: --parameter k=v becomes k=….
func redactParams(args []string) []string {
	out := append([]string(nil), args...)
	for i := 1; i < len(out); i++ {
		if out[i-1] == "--parameter" {
			k, _, _ := strings.Cut(out[i], "=")
			out[i] = k + "=…"
		}
	}
	return out
}

// logTailLines is how many output lines a failed build's error carries
// when the full output is in a log file.
const logTailLines = 6

// maxLogs is how many build logs LogDir keeps; older ones are removed.
const maxLogs = 200

// openLog creates the log file of one streamed operation, or returns nil
// (no LogDir, or it cannot be written).
func (c *Client) openLog(logName string) *os.File {
	if c.LogDir == "" {
		return nil
	}
	if err := os.MkdirAll(c.LogDir, 0o700); err != nil {
		return nil
	}
	if err := os.Chmod(c.LogDir, 0o700); err != nil {
		return nil
	}
	pruneLogs(c.LogDir, maxLogs-1)
	ts := time.Now().UTC().Format("20060102T150405Z")
	f, err := os.CreateTemp(c.LogDir, safeFileName(logName)+"-"+ts+"-*.log") // mode 0600
	if err != nil {
		return nil
	}
	return f
}

// pruneLogs removes the oldest *.log files in dir beyond keep.
func pruneLogs(dir string, keep int) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var logs []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".log") {
			logs = append(logs, e.Name())
		}
	}
	if len(logs) <= keep {
		return
	}
	type aged struct {
		name string
		mod  time.Time
	}
	var all []aged
	for _, n := range logs {
		if fi, err := os.Stat(filepath.Join(dir, n)); err == nil {
			all = append(all, aged{n, fi.ModTime()})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mod.Before(all[j].mod) })
	for i := 0; i < len(all)-keep; i++ {
		_ = os.Remove(filepath.Join(dir, all[i].name))
	}
}

// safeFileName keeps [A-Za-z0-9._-] and replaces anything else with '_'.
func safeFileName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] == '.' || b[0] == '-' {
		b = append([]byte("x"), b...)
	}
	if len(b) > 100 {
		b = b[:100]
	}
	return string(b)
}

// tailLines keeps the last n non-empty lines of s.
func tailLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) <= n {
		return strings.Join(lines, "\n")
	}
	return "…\n" + strings.Join(lines[len(lines)-n:], "\n")
}

func cliError(msg string, args []string, res execx.Result, err error) error {
	e := &CLIError{Msg: msg, Code: res.ExitCode, Output: res.Combined(), Err: err}
	var ee *execx.ExitError
	if errors.As(err, &ee) {
		e.Code = ee.Code
		if e.Output == "" {
			e.Output = strings.TrimSpace(ee.Output)
		}
	}
	var te *execx.TimeoutError
	if errors.As(err, &te) {
		// The partial output rarely explains a timeout; say what happened.
		e.Output = strings.TrimSpace(te.Error() + "\n" + e.Output)
	}
	e.Output = tail(e.Output, maxErrOutput)
	if ee == nil {
		return exitcode.New(exitcode.Failure, e)
	}
	program := "coder"
	if len(args) > 0 {
		program += " " + args[0]
	}
	return exitcode.External(program, ee.Code, e)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
		s = s[i+1:]
	}
	return "…" + s
}

// Version runs `coder version` and returns its first output line.
func (c *Client) Version(ctx context.Context) (string, error) {
	out, err := c.capture(ctx, "coder version failed", "version")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return line, nil
		}
	}
	return "", nil
}

// WhoAmI runs `coder whoami -o json` at most once per Client; later calls
// return the first answer (error included). A call cut short by its
// context is not remembered.
func (c *Client) WhoAmI(ctx context.Context) (WhoAmI, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.asked {
		if c.whoamiEr != nil {
			return WhoAmI{}, c.whoamiEr
		}
		return *c.whoami, nil
	}
	if c.Cache != nil {
		if w, ok := c.Cache.Load(); ok {
			c.asked, c.whoami = true, &w
			return w, nil
		}
	}
	out, err := c.capture(ctx, "coder whoami -o json failed", "whoami", "-o", "json")
	var w WhoAmI
	if err == nil {
		w, err = ParseWhoAmI(out)
	}
	if err == nil && c.Cache != nil {
		c.Cache.Store(w)
	}
	if ctx.Err() != nil && err != nil {
		return WhoAmI{}, err
	}
	c.asked = true
	if err != nil {
		c.whoamiEr = err
		return WhoAmI{}, err
	}
	c.whoami = &w
	return w, nil
}

// ListArgs is the argv of an inventory listing.
func ListArgs(all bool) []string {
	if all {
		return []string{"list", "--all", "-o", "json"}
	}
	return []string{"list", "-o", "json"}
}

// List runs `coder list [--all] -o json` and parses it. A CLI failure reads
// "coder list -o json failed: <output>" with the CLI's exit code; output
// that is not JSON is exit 5.
func (c *Client) List(ctx context.Context, all bool) ([]Workspace, error) {
	args := ListArgs(all)
	out, err := c.capture(ctx, "coder "+strings.Join(args, " ")+" failed", args...)
	if err != nil {
		return nil, err
	}
	return ParseList(out)
}

// CreateOptions are the template choices for `coder create`.
type CreateOptions struct {
	Template             string
	Preset               string
	NoWait               bool // coder.wait=no: return before the build finishes
	UseParameterDefaults bool
	Parameters           []string // name=value, each its own --parameter
	RichParameterFile    string
}

// CreateArgs is the exact argv of `coder create`:
//
//	create --yes --template T [--preset P] [--no-wait] [--use-parameter-defaults]
//	       [--parameter k=v]... [--rich-parameter-file F] <name>
//
// Values are trimmed and blank ones dropped. It never passes --wait.
func CreateArgs(name string, o CreateOptions) []string {
	args := []string{"create", "--yes", "--template", strings.TrimSpace(o.Template)}
	if p := strings.TrimSpace(o.Preset); p != "" {
		args = append(args, "--preset", p)
	}
	if o.NoWait {
		args = append(args, "--no-wait")
	}
	if o.UseParameterDefaults {
		args = append(args, "--use-parameter-defaults")
	}
	for _, p := range o.Parameters {
		if p = strings.TrimSpace(p); p != "" {
			args = append(args, "--parameter", p)
		}
	}
	if f := strings.TrimSpace(o.RichParameterFile); f != "" {
		args = append(args, "--rich-parameter-file", f)
	}
	return append(args, name)
}

// Create runs `coder create`, streaming its output to c.Stderr.
func (c *Client) Create(ctx context.Context, name string, o CreateOptions) error {
	if strings.TrimSpace(o.Template) == "" {
		return exitcode.Errorf(exitcode.Usage, "provider=coder requires --coder-template or coder.template to create a workspace")
	}
	if err := checkName(name); err != nil {
		return err
	}
	return c.stream(ctx, "coder create workspace "+name+" failed", name+"-create", CreateArgs(name, o)...)
}

// Start runs `coder start --yes <ref>`, streamed to c.Stderr.
func (c *Client) Start(ctx context.Context, ref string) error { return c.lifecycle(ctx, "start", ref) }

// Stop runs `coder stop --yes <ref>`, streamed to c.Stderr.
func (c *Client) Stop(ctx context.Context, ref string) error { return c.lifecycle(ctx, "stop", ref) }

// Delete runs `coder delete --yes <ref>`, streamed to c.Stderr.
func (c *Client) Delete(ctx context.Context, ref string) error {
	return c.lifecycle(ctx, "delete", ref)
}

func (c *Client) lifecycle(ctx context.Context, verb, ref string) error {
	if err := checkRef(ref); err != nil {
		return fmt.Errorf("coder %s: %w", verb, err)
	}
	return c.stream(ctx, "coder "+verb+" workspace "+ref+" failed", bareName(ref)+"-"+verb, verb, "--yes", ref)
}

// checkRef refuses refs the CLI would misread (empty, or parsed as a flag).
func checkRef(ref string) error {
	if strings.TrimSpace(ref) == "" {
		return exitcode.Errorf(exitcode.Usage, "a workspace name is required")
	}
	if strings.HasPrefix(ref, "-") || strings.ContainsAny(ref, " \t\r\n") {
		return exitcode.Errorf(exitcode.Usage, "invalid coder workspace reference %q", ref)
	}
	return nil
}

var notFoundNeedles = []string{"not found", "does not exist", "no such workspace", "unknown workspace"}

// IsNotFound reports whether err says the workspace is gone.
//
// Only an answer from the Coder CLI itself counts: the CLI must have run
// and exited with an ordinary error code (1-125). A missing binary ("exec:
// not found", exit 127 from a shell) never means the workspace is gone.
func IsNotFound(err error) bool {
	var ce *CLIError
	if !errors.As(err, &ce) || ce.Code <= 0 || ce.Code >= 126 {
		return false
	}
	return containsAny(ce.Error(), notFoundNeedles)
}

var buildActiveNeedles = []string{"workspace build is already active"}

// IsBuildActive reports whether err is Coder refusing a new build because
// another one (a start or stop issued elsewhere) is still running; that
// build is to be waited for, not reported.
func IsBuildActive(err error) bool {
	var ce *CLIError
	if !errors.As(err, &ce) || ce.Code <= 0 || ce.Code >= 126 {
		return false
	}
	return containsAny(ce.Error(), buildActiveNeedles)
}

// Auth check classifications (doctor).
const (
	AuthMissingLogin = "missing_login"
	AuthFailed       = "auth_failed"
)

// missingLoginNeedles are what the CLI and the server say when nobody is
// logged in. "You are not logged in" comes from the CLI when it has no
// URL; with CODER_URL set (or a stale session file) the request reaches
// the server, which answers 401 "You are signed out or your session has
// expired" for a missing, unknown or expired token.
var missingLoginNeedles = []string{
	"not logged in", "not authenticated", "no active session", "login required", "please log in",
	"you are signed out", "your session has expired",
}

// ClassifyAuth classifies failed `coder whoami` output: "missing_login"
// when the CLI or server says nobody is logged in (no session, or a
// session that is signed out or expired), else "auth_failed" (a server or
// network failure must never read as a missing login).
func ClassifyAuth(output string) string {
	if containsAny(output, missingLoginNeedles) {
		return AuthMissingLogin
	}
	return AuthFailed
}

func containsAny(s string, needles []string) bool {
	s = strings.ToLower(s)
	for _, n := range needles {
		if strings.Contains(s, n) {
			return true
		}
	}
	return false
}
