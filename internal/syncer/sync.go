package syncer

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/iostreams"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/remotecmd"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// Defaults (docs/configuration.md lists them with their keys).
const (
	DefaultWarnFiles            = 50000
	DefaultFailFiles            = 150000
	DefaultWarnBytes      int64 = 5 << 30
	DefaultFailBytes      int64 = 20 << 30
	DefaultTimeout              = 15 * time.Minute
	MassDeletionThreshold       = 200
)

// heartbeatEvery is the interval of "still running" events during rsync.
var heartbeatEvery = 15 * time.Second

// Remote is the remote side of a sync; *sshx.Session satisfies it.
type Remote interface {
	// Run runs a shell command line on the remote. A non-nil error is a
	// transport failure; otherwise the int is the remote exit code.
	Run(ctx context.Context, remote string, stdin io.Reader, stdout, stderr io.Writer) (int, error)
	// RSH is rsync's -e value (already quoted for rsync's -e parser).
	RSH() string
	// Target gives the user and host for rsync's destination.
	Target() lease.Target
}

// Options configure a sync. Numeric zero values take the defaults; the
// booleans are taken as given (see DefaultOptions).
type Options struct {
	RepoRoot    string   // local git top level
	Workdir     string   // remote absolute dir: WorkdirFor(workRoot, leaseID, repoName)
	Exclude     []string // sync.exclude, applied after the built-ins
	Delete      bool     // prune files crabbox synced before that left the manifest
	Checksum    bool     // rsync --checksum
	Fingerprint bool     // allow skipping an unchanged sync
	FullResync  bool     // empty the workdir first; never skip
	// GitSeed lets the first sync into an empty workdir clone the commit
	// from a credential-free origin on the workspace first.
	GitSeed bool
	// PrepareHook is a shell snippet the remote prepare step runs first,
	// with $wd set to the workdir (no extra round trip). It must not write
	// to stdout.
	PrepareHook string

	WarnFiles, FailFiles int
	WarnBytes, FailBytes int64
	AllowLarge           bool // --force-sync-large / sync.allowLarge

	AllowMassDeletions bool // CRABBOX_ALLOW_MASS_DELETIONS=1

	Timeout time.Duration // the rsync step; 15m when zero
	RSync   string        // rsync program; "rsync" when empty

	// Plan, when set, is a scan made earlier (Scan with the same local
	// options) that Sync sends instead of scanning again: one local
	// snapshot synced to several machines (run --shards). A Plan is only
	// read by Send, so one may serve concurrent syncs.
	Plan *Plan
}

// DefaultOptions returns the sync defaults: Delete and Fingerprint on,
// 50000/150000 files, 5/20 GiB, 15m, rsync.
func DefaultOptions() Options {
	return Options{Delete: true, Fingerprint: true}.withDefaults()
}

func (o Options) withDefaults() Options {
	if o.WarnFiles <= 0 {
		o.WarnFiles = DefaultWarnFiles
	}
	if o.FailFiles <= 0 {
		o.FailFiles = DefaultFailFiles
	}
	if o.WarnBytes <= 0 {
		o.WarnBytes = DefaultWarnBytes
	}
	if o.FailBytes <= 0 {
		o.FailBytes = DefaultFailBytes
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RSync == "" {
		o.RSync = "rsync"
	}
	return o
}

// safeRemotePath: characters that need no quoting in any rsync version's
// remote path nor in a remote shell.
func safeRemotePath(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/._-+@,=", c) >= 0) {
			return false
		}
	}
	return true
}

func (o Options) validate() error {
	if o.RepoRoot == "" {
		return errors.New("sync: no repository root")
	}
	w := o.Workdir
	if !path.IsAbs(w) || path.Clean(w) != w || strings.Count(w, "/") < 2 {
		return fmt.Errorf("sync: remote workdir %q must be a clean absolute path at least two levels deep", w)
	}
	if !safeRemotePath(w) {
		return fmt.Errorf("sync: remote workdir %q may only hold letters, digits and / . _ - + @ , =", w)
	}
	return nil
}

// Event is a progress report; Message is the full line to print.
type Event struct {
	Kind    string // "candidate", "warning", "skip", "phase", "heartbeat", "complete"
	Message string
}

// Result describes a finished (or skipped) sync.
type Result struct {
	Files    int           `json:"files"`
	Bytes    int64         `json:"bytes"`
	Skipped  bool          `json:"skipped"`
	Pruned   int           `json:"pruned"`
	Duration time.Duration `json:"-"`
	Phases   []Phase       `json:"phases"`
}

// Phase is the timing of one sync step.
type Phase struct {
	Name    string `json:"name"`
	Ms      int64  `json:"ms"`
	Skipped bool   `json:"skipped,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// Sync sends the working tree to remote: Scan, then Send.
func Sync(ctx context.Context, r execx.Runner, remote Remote, o Options, report func(Event)) (Result, error) {
	p := o.Plan
	if p == nil {
		p = Scan(ctx, r, o)
	}
	return Send(ctx, r, remote, o, p, report)
}

// Plan is the local half of a sync: the manifest, the guards' verdict and
// the fingerprint. It needs no remote, so a caller can compute it while the
// workspace is still being resolved, then hand it to Send.
type Plan struct {
	m             *Manifest
	fp            string
	ids           []string
	forceChecksum bool
	events        []Event
	phases        []Phase
	took          time.Duration
	err           error
}

// Err is the scan's failure (a guard's refusal included), nil when the
// plan can be sent.
func (p *Plan) Err() error { return p.err }

// Files are the manifest's paths (slash-separated, relative to the repo
// root, sorted); nil when the scan failed. The slice is shared: do not
// change it.
func (p *Plan) Files() []string {
	if p.m == nil {
		return nil
	}
	return p.m.Files
}

// Size is the size of the manifest's file at path (as Files names it)
// when it was scanned, and whether the manifest has it.
func (p *Plan) Size(path string) (int64, bool) {
	if p.m == nil {
		return 0, false
	}
	i, ok := slices.BinarySearch(p.m.Files, path)
	if !ok || i >= len(p.m.info) {
		return 0, false
	}
	return p.m.info[i].size, true
}

// Scan builds the manifest, applies the large-sync and mass-deletion
// guards, and computes the fingerprint. Only o's local fields are used
// (RepoRoot, Exclude, limits, Checksum, Delete, AllowLarge,
// AllowMassDeletions); errors are kept in the Plan for Send to return.
func Scan(ctx context.Context, r execx.Runner, o Options) *Plan {
	start := time.Now()
	p := &Plan{}
	defer func() { p.took = time.Since(start) }()
	o = o.withDefaults()
	report := func(e Event) { p.events = append(p.events, e) }
	done := func(name string, t0 time.Time, note string) {
		p.phases = append(p.phases, Phase{Name: name, Ms: time.Since(t0).Milliseconds()})
		msg := fmt.Sprintf("sync phase: %s %s", name, iostreams.FormatDuration(time.Since(t0)))
		if note != "" {
			msg += " (" + note + ")"
		}
		report(Event{Kind: "phase", Message: msg})
	}
	if abs, err := filepath.Abs(o.RepoRoot); err == nil {
		o.RepoRoot = abs
	}

	// 1. Manifest and guards.
	t0 := time.Now()
	m, err := BuildManifest(ctx, r, o)
	if err != nil {
		p.err = syncErr(ctx, fmt.Errorf("sync: building the manifest: %w", err))
		return p
	}
	p.m = m
	done("manifest", t0, "")
	report(Event{Kind: "candidate", Message: fmt.Sprintf("sync candidate: %d files, %s", len(m.Files), HumanSize(m.Bytes))})
	if len(m.Skipped) > 0 {
		report(Event{Kind: "warning", Message: fmt.Sprintf("sync warning: not syncing %d submodule/nested repository/special path(s): %s",
			len(m.Skipped), listSome(m.Skipped, 5))})
	}
	if err := checkGuards(o, m, report); err != nil {
		p.err = err
		return p
	}

	// 2. Fingerprint. Computed even when skipping is disabled: its
	// content ids let prepare defeat rsync's size+mtime quick check.
	t0 = time.Now()
	p.fp, p.ids, err = fingerprint(ctx, r, o, m)
	if err != nil {
		if ctx.Err() != nil {
			p.err = ctx.Err()
			return p
		}
		report(Event{Kind: "warning", Message: fmt.Sprintf("sync warning: no fingerprint (%v); syncing with rsync --checksum", err)})
		p.fp, p.ids, p.forceChecksum = "", nil, true
	}
	note := ""
	if !o.Fingerprint {
		note = "skip disabled"
	}
	done("fingerprint", t0, note)
	return p
}

// Send replays the plan's events, then runs the remote half: prepare
// (skip when the fingerprint matches), rsync, finalize. Result.Duration
// counts the plan's own time plus the remote steps.
func Send(ctx context.Context, r execx.Runner, remote Remote, o Options, p *Plan, report func(Event)) (res Result, err error) {
	start := time.Now()
	if report == nil {
		report = func(Event) {}
	}
	o = o.withDefaults()
	elapsed := func() time.Duration { return p.took + time.Since(start) }
	defer func() { res.Duration = elapsed() }()
	done := func(name string, t0 time.Time, note string) {
		ms := time.Since(t0).Milliseconds()
		res.Phases = append(res.Phases, Phase{Name: name, Ms: ms})
		msg := fmt.Sprintf("sync phase: %s %s", name, iostreams.FormatDuration(time.Since(t0)))
		if note != "" {
			msg += " (" + note + ")"
		}
		report(Event{Kind: "phase", Message: msg})
	}
	skip := func(name, reason string) {
		res.Phases = append(res.Phases, Phase{Name: name, Skipped: true, Reason: reason})
		report(Event{Kind: "phase", Message: fmt.Sprintf("sync phase: %s skipped (%s)", name, reason)})
	}
	for _, e := range p.events {
		report(e)
	}
	res.Phases = append(res.Phases, p.phases...)
	if p.err != nil {
		return res, p.err
	}
	if err := o.validate(); err != nil {
		return res, exitcode.New(exitcode.Sync, err)
	}
	if abs, err := filepath.Abs(o.RepoRoot); err == nil {
		o.RepoRoot = abs
	}
	m, fp, ids := p.m, p.fp, p.ids
	res.Files, res.Bytes = len(m.Files), m.Bytes

	// 3. Prepare.
	t0 := time.Now()
	manifest := nulList(m.Files)
	idList := nulList(ids)
	var stdin bytes.Buffer
	stdin.Grow(len(fp) + 2 + len(idList) + len(manifest))
	stdin.WriteString(fp + "\n")
	stdin.Write(idList)
	stdin.WriteByte(0)
	stdin.Write(manifest)
	// Every sync attempt that gets past the skip check owns the workdir
	// under a new generation: an rsync receiver or finalize of any other
	// generation refuses to write (see receiverScript).
	gen, err := newGeneration()
	if err != nil {
		return res, exitcode.Errorf(exitcode.Sync, "sync: %v", err)
	}
	var notes strings.Builder
	out, err := runScriptNotes(ctx, remote, "prepare", prepareScript, &stdin, &notes,
		o.Workdir, flag(o.FullResync), flag(o.Fingerprint), flag(o.Delete), o.PrepareHook, gen)
	if err != nil {
		return res, err
	}
	for _, l := range strings.Split(notes.String(), "\n") {
		if n, ok := strings.CutPrefix(strings.TrimSpace(l), stoppedReceiverNote); ok {
			report(Event{Kind: "warning", Message: "sync warning: " + stoppedReceiverNote + n})
		}
	}
	for _, n := range remotecmd.HookNotes(notes.String()) {
		report(Event{Kind: "warning", Message: "sync warning: " + n})
	}
	note := ""
	switch verb, n := lastVerb(out); verb {
	case "skip":
		done("prepare", t0, "no changes")
		skipped(&res, elapsed(), report)
		return res, nil
	case "sync":
		res.Pruned = n
		if n > 0 {
			note = fmt.Sprintf("pruned %d", n)
		}
		done("prepare", t0, note)
	default:
		return res, exitcode.Errorf(exitcode.Sync, "sync: unexpected reply from the remote prepare step: %q", tail(out, 200))
	}

	// 3b. Git seed: an empty workdir clones HEAD from origin on the
	// workspace, so rsync only sends what differs. Failure only warns.
	if o.GitSeed {
		t0 = time.Now()
		if u, b, h, why := seedSource(ctx, r, o.RepoRoot); u != "" {
			out, err := runScript(ctx, remote, "seed", seedScript, nil, o.Workdir, u, b, h, gen)
			switch {
			case err != nil && ctx.Err() != nil:
				return res, ctx.Err()
			case err != nil:
				report(Event{Kind: "warning", Message: fmt.Sprintf("sync warning: git seed failed, sending everything with rsync: %v", err)})
				done("seed", t0, "failed")
			default:
				done("seed", t0, strings.TrimSpace(out))
			}
		} else {
			if why != "" {
				report(Event{Kind: "warning", Message: "sync warning: " + why})
			}
			skip("seed", "no credential-free origin branch containing HEAD")
		}
	}

	// 4. rsync.
	t0 = time.Now()
	vanished, err := runRsync(ctx, r, remote, o, gen, p.forceChecksum, m.Files, report)
	if err != nil {
		return res, err
	}
	if vanished {
		report(Event{Kind: "warning", Message: "sync warning: some files vanished while rsync ran; the next sync will not be skipped"})
		fp = ""
	}
	done("rsync", t0, "")

	// 5. Finalize.
	t0 = time.Now()
	if _, err := runScript(ctx, remote, "finalize", finalizeScript, nil, o.Workdir, fp, gen); err != nil {
		return res, err
	}
	done("finalize", t0, "")
	report(Event{Kind: "complete", Message: fmt.Sprintf("sync complete in %s", iostreams.FormatDuration(elapsed()))})
	return res, nil
}

// skipped completes res for a sync the remote found unchanged: rsync and
// finalize did not run.
func skipped(res *Result, took time.Duration, report func(Event)) {
	for _, name := range []string{"rsync", "finalize"} {
		res.Phases = append(res.Phases, Phase{Name: name, Skipped: true, Reason: "no changes"})
		report(Event{Kind: "phase", Message: fmt.Sprintf("sync phase: %s skipped (no changes)", name)})
	}
	res.Skipped = true
	report(Event{Kind: "skip", Message: fmt.Sprintf("No changes detected, skipping sync (%s)", iostreams.FormatDuration(took))})
}

// FastFingerprint is the fingerprint a remote may compare itself to skip
// the sync in the same round trip as the command (remotecmd.FastLine),
// and ok: false when the plan cannot be skipped that way (it failed, has
// no fingerprint, or o disables skipping or asks for a full resync; o's
// workdir must be valid). Send then does the sync as usual.
func (p *Plan) FastFingerprint(o Options) (fp string, ok bool) {
	if p.err != nil || p.fp == "" || p.forceChecksum || !o.Fingerprint || o.FullResync || o.validate() != nil {
		return "", false
	}
	return p.fp, true
}

// SkippedRemotely is the Result of the plan's sync when the remote found
// the fingerprint unchanged in a round trip of the caller's (check took
// that long): the plan's events are replayed, then prepare (the check),
// and rsync and finalize as skipped, as Send reports a skip.
func SkippedRemotely(p *Plan, check time.Duration, report func(Event)) Result {
	if report == nil {
		report = func(Event) {}
	}
	res := Result{Files: len(p.m.Files), Bytes: p.m.Bytes, Duration: p.took + check}
	for _, e := range p.events {
		report(e)
	}
	res.Phases = append(res.Phases, p.phases...)
	res.Phases = append(res.Phases, Phase{Name: "prepare", Ms: check.Milliseconds()})
	report(Event{Kind: "phase", Message: fmt.Sprintf("sync phase: prepare %s (no changes)", iostreams.FormatDuration(check))})
	skipped(&res, res.Duration, report)
	return res
}

func checkGuards(o Options, m *Manifest, report func(Event)) error {
	if len(m.Deleted) >= MassDeletionThreshold && !o.AllowMassDeletions {
		return exitcode.Errorf(exitcode.Sync,
			"sync refused: %d tracked files are deleted locally (limit %d), e.g. %s; %s",
			len(m.Deleted), MassDeletionThreshold-1, listSome(m.Deleted, 3),
			exitcode.NextAction("check `git status`, or set CRABBOX_ALLOW_MASS_DELETIONS=1 to sync anyway"))
	}
	files, size := len(m.Files), m.Bytes
	over := files > o.FailFiles || size > o.FailBytes
	if over && !o.AllowLarge {
		return exitcode.Errorf(exitcode.Sync,
			"sync candidate too large: %d files, %s (limit %d files, %s); largest dirs: %s; %s",
			files, HumanSize(size), o.FailFiles, HumanSize(o.FailBytes), topDirs(m, 5),
			exitcode.NextAction("exclude paths with sync.exclude or .crabboxignore, or pass --force-sync-large"))
	}
	if over || files > o.WarnFiles || size > o.WarnBytes {
		report(Event{Kind: "warning", Message: fmt.Sprintf(
			"sync warning: large sync candidate: %d files, %s (warning above %d files or %s); largest dirs: %s",
			files, HumanSize(size), o.WarnFiles, HumanSize(o.WarnBytes), topDirs(m, 5))})
	}
	return nil
}

// topDirs lists the n top-level entries holding the most bytes.
func topDirs(m *Manifest, n int) string {
	type agg struct {
		name  string
		files int
		bytes int64
	}
	byName := map[string]*agg{}
	for i, p := range m.Files {
		name, _, isDir := strings.Cut(p, "/")
		if isDir {
			name += "/"
		}
		a := byName[name]
		if a == nil {
			a = &agg{name: name}
			byName[name] = a
		}
		a.files++
		if i < len(m.info) {
			a.bytes += m.info[i].size
		}
	}
	all := make([]*agg, 0, len(byName))
	for _, a := range byName {
		all = append(all, a)
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].bytes != all[j].bytes {
			return all[i].bytes > all[j].bytes
		}
		if all[i].files != all[j].files {
			return all[i].files > all[j].files
		}
		return all[i].name < all[j].name
	})
	var parts []string
	for i, a := range all {
		if i == n {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %s (%d files)", a.name, HumanSize(a.bytes), a.files))
	}
	return strings.Join(parts, ", ")
}

// runScript runs `bash -c '<script>' crabbox-sync <args>` and returns its
// stdout. A transport error comes back as is; a non-zero exit is exit 6.
func runScript(ctx context.Context, remote Remote, step, script string, stdin io.Reader, args ...string) (string, error) {
	return runScriptNotes(ctx, remote, step, script, stdin, nil, args...)
}

// stoppedReceiverNote starts the line prepare prints on stderr when it
// stopped an older sync's receiving rsync; Send reports it as a warning.
const stoppedReceiverNote = "stopped the receiving rsync of an earlier sync"

// runScriptNotes is runScript that also hands a successful script's
// stderr to notes (when not nil).
func runScriptNotes(ctx context.Context, remote Remote, step, script string, stdin io.Reader, notes io.Writer, args ...string) (string, error) {
	var out, errb bytes.Buffer
	cmd := "bash -c " + sshx.Quote(script) + " crabbox-sync " + sshx.QuoteArgs(args)
	code, err := remote.Run(ctx, cmd, stdin, &out, &errb)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", err
	}
	if code != 0 {
		detail := lastLines(errb.String())
		if detail == "" {
			detail = "no error output"
		}
		next := "retry with --full-resync"
		if code == 5 { // another sync owns the workdir (see scripts.go)
			next = "retry once the other sync into this workdir ended"
		}
		return "", exitcode.Errorf(exitcode.Sync, "sync %s step failed on %s (exit %d): %s; %s",
			step, remote.Target().Host, code, detail, exitcode.NextAction(next))
	}
	if notes != nil {
		io.Copy(notes, &errb)
	}
	return out.String(), nil
}

// runRsync sends the manifest under generation gen. It reports whether
// rsync said some source files vanished (exit 24), which is not an error.
//
// The list rsync reads names every file as "./<path>": rsync's
// --files-from skips entries starting with '#' or ';' as comments, even
// with --from0, so "#dir/x" would silently never be sent; "./" makes every
// entry literal. --force lets a file or symlink replace a directory the
// workspace filled (build outputs in a directory that is a file now): the
// path is in the manifest, so it is crabbox's to replace. The receiving
// rsync is started through receiverScript, which holds the workdir's sync
// lock and refuses to run for any generation but gen.
func runRsync(ctx context.Context, r execx.Runner, remote Remote, o Options, gen string, checksum bool, files []string, report func(Event)) (bool, error) {
	args := []string{"-az", "--force"}
	if o.Checksum || checksum {
		args = append(args, "--checksum")
	}
	args = append(args, "--files-from=-", "--from0", "-e", remote.RSH(),
		"--rsync-path="+receiverCommand(o.Workdir, gen),
		strings.TrimRight(o.RepoRoot, "/")+"/",
		sshx.Destination(remote.Target())+":"+o.Workdir+"/")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		start := time.Now()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				report(Event{Kind: "heartbeat", Message: fmt.Sprintf("sync still running: rsync %s elapsed", iostreams.FormatDuration(time.Since(start).Truncate(time.Second)))})
			}
		}
	}()
	res, err := r.Run(ctx, execx.Cmd{Name: o.RSync, Args: args, Stdin: bytes.NewReader(rsyncList(files)), Timeout: o.Timeout})
	close(stop)
	wg.Wait()
	if err == nil {
		return false, nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return false, cerr
	}
	var te *execx.TimeoutError
	if errors.As(err, &te) {
		return false, exitcode.Errorf(exitcode.Sync, "rsync timed out after %s; %s", o.Timeout, exitcode.NextAction("retry with --full-resync, or raise sync.timeout"))
	}
	var ee *execx.ExitError
	if errors.As(err, &ee) {
		if ee.Code == 24 {
			return true, nil
		}
		return false, rsyncExitError(remote.Target().Host, ee.Code, string(res.Stderr))
	}
	return false, exitcode.Errorf(exitcode.Sync, "rsync: %v; %s", err, exitcode.NextAction("check that rsync is installed locally"))
}

// rsyncExitError classifies a failed rsync. One that lost its transport
// (exit 255: the remote shell failed; 12: the protocol stream broke; 10:
// socket I/O; or any "Broken pipe" / "connection unexpectedly closed")
// is a transport error (exit 7), which the caller retries once over a new
// tunnel; the sync protocol is safe to rerun. A refusal by crabbox's own
// receiver or a missing rsync on the workspace also ends in exit 12, but
// no new tunnel fixes those: they, like every other failure, are exit 6.
func rsyncExitError(host string, code int, stderr string) error {
	detail := lastLines(stderr)
	if detail == "" {
		detail = "no error output"
	}
	low := strings.ToLower(stderr)
	switch {
	case strings.Contains(stderr, receiverMark):
		return exitcode.Errorf(exitcode.Sync, "rsync to %s was refused by the workspace (exit %d): %s; %s", host, code, detail, exitcode.NextAction("retry"))
	case strings.Contains(low, "rsync: command not found") || strings.Contains(low, "rsync: not found") ||
		strings.Contains(low, "rsync: no such file or directory"):
		return exitcode.Errorf(exitcode.Sync, "rsync is not installed on the workspace %s (exit %d): %s; %s", host, code, detail, exitcode.NextAction("install rsync in the workspace image"))
	case code == 255 || code == 12 || code == 10 ||
		strings.Contains(low, "broken pipe") || strings.Contains(low, "connection unexpectedly closed") ||
		strings.Contains(low, "connection reset by peer"):
		return exitcode.Errorf(exitcode.Transport, "rsync to %s lost its connection (exit %d): %s; %s", host, code, detail, exitcode.NextAction("retry"))
	}
	return exitcode.Errorf(exitcode.Sync, "rsync to %s failed (exit %d): %s; %s",
		host, code, detail, exitcode.NextAction("retry, or retry with --full-resync"))
}

// rsyncList is the NUL-terminated list given to rsync: every path with a
// "./" prefix, so rsync takes it literally (see runRsync).
func rsyncList(files []string) []byte {
	n := 0
	for _, f := range files {
		n += len(f) + 3
	}
	b := make([]byte, 0, n)
	for _, f := range files {
		b = append(b, "./"...)
		b = append(b, f...)
		b = append(b, 0)
	}
	return b
}

// newGeneration is a token unique to one sync attempt.
func newGeneration() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("no random generation token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// receiverCommand is rsync's --rsync-path: the remote shell runs
// receiverScript, which execs the workspace's rsync with the server
// arguments rsync appends. Every word is quoted for the remote shell.
func receiverCommand(workdir, gen string) string {
	return "bash -c " + sshx.Quote(receiverScript) + " crabbox-rsync " + sshx.QuoteArgs([]string{workdir, gen, "rsync"})
}

// syncErr gives err exit code 6 unless it is a cancellation.
func syncErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return exitcode.New(exitcode.Sync, err)
}

// lastVerb finds the last "skip" or "sync N" line (shell start-up files
// may print before the script runs).
func lastVerb(out string) (string, int) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "skip" {
			return "skip", 0
		}
		if n, ok := strings.CutPrefix(l, "sync "); ok {
			if v, err := strconv.Atoi(n); err == nil && v >= 0 {
				return "sync", v
			}
		}
	}
	return "", 0
}

func nulList(files []string) []byte {
	n := 0
	for _, f := range files {
		n += len(f) + 1
	}
	b := make([]byte, 0, n)
	for _, f := range files {
		b = append(b, f...)
		b = append(b, 0)
	}
	return b
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// HumanSize renders n bytes as "512 B", "1.0 KiB", "12.3 MiB", ...
func HumanSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= 1024
		if v < 1024 || unit == "TiB" {
			return fmt.Sprintf("%.1f %s", v, unit)
		}
	}
	return "" // unreachable
}

func listSome(items []string, n int) string {
	q := make([]string, 0, n+1)
	for i, s := range items {
		if i == n {
			q = append(q, fmt.Sprintf("… (%d more)", len(items)-n))
			break
		}
		q = append(q, strconv.Quote(s))
	}
	return strings.Join(q, ", ")
}

// lastLines is execx.LastLines cut to its last 1000 bytes.
func lastLines(s string) string { return tail(execx.LastLines(s), 1000) }

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
