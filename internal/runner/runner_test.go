package runner

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/owner"
	"github.com/crabbox-dev/crabbox/internal/provider"
	"github.com/crabbox-dev/crabbox/internal/remotecmd"
	"github.com/crabbox-dev/crabbox/internal/runs"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// loopback is the fake exec runner of these tests: it records every argv,
// answers the ssh control-master calls, and runs each remote command
// line with bash on this machine (the "workspace" is a temp dir), so the
// real wrapper, owner and kill scripts run. Other programs (git) run for
// real.
type loopback struct {
	mu    sync.Mutex
	argvs []string
	// transport, when set, makes ssh calls whose remote line contains it
	// fail as a dropped tunnel (exit 255) after running the line (only
	// the first such call when transportOnce).
	transport     string
	transportOnce bool
	// transportBefore fails such a call before running its line, as a
	// dead connection does.
	transportBefore bool
	// rsh, when set, is rsync's remote shell (see newSyncHarness).
	rsh string
	// gitDelay, when set, holds every `git status` that long first (a
	// slow scan).
	gitDelay time.Duration
}

func (lb *loopback) Run(ctx context.Context, c execx.Cmd) (execx.Result, error) {
	lb.mu.Lock()
	lb.argvs = append(lb.argvs, c.String())
	lb.mu.Unlock()
	if c.Name == "git" && lb.gitDelay > 0 && slices.Contains(c.Args, "status") {
		select {
		case <-time.After(lb.gitDelay):
		case <-ctx.Done():
		}
	}
	if c.Name == "rsync" && lb.rsh != "" {
		// rsync's remote shell: this machine (the "workspace").
		args := slices.Clone(c.Args)
		if i := slices.Index(args, "-e"); i >= 0 && i+1 < len(args) {
			args[i+1] = lb.rsh
		}
		c.Args = args
		return execx.OS{}.Run(ctx, c)
	}
	if c.Name != "ssh" {
		return execx.OS{}.Run(ctx, c)
	}
	i := slices.Index(c.Args, "--")
	if i < 0 { // ssh -f -N (master) or ssh -O exit
		return execx.Result{}, nil
	}
	remote := c.Args[i+1]
	lb.mu.Lock()
	failBefore := lb.transportBefore && lb.transport != "" && strings.Contains(remote, lb.transport)
	if failBefore && lb.transportOnce {
		lb.transport = ""
	}
	lb.mu.Unlock()
	if failBefore {
		return execx.Result{ExitCode: 255}, &execx.ExitError{Cmd: "ssh", Code: 255, Output: "Connection reset"}
	}
	res, err := execx.OS{}.Run(ctx, execx.Cmd{Name: "bash", Args: []string{"-c", remote}, Stdin: c.Stdin,
		Stdout: c.Stdout, Stderr: c.Stderr, Passthrough: c.Passthrough})
	if lb.transport != "" && strings.Contains(remote, lb.transport) {
		if lb.transportOnce {
			lb.mu.Lock()
			lb.transport = ""
			lb.mu.Unlock()
		}
		return execx.Result{ExitCode: 255}, &execx.ExitError{Cmd: "ssh", Code: 255, Output: "Connection reset"}
	}
	return res, err
}

func (lb *loopback) calls() []string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return append([]string(nil), lb.argvs...)
}

// fakeProvider hands out one lease whose work root is a temp dir.
type fakeProvider struct {
	mu         sync.Mutex
	target     lease.Target
	calls      []string
	acquireErr error
	releaseErr error
	// unconfirmed makes Resolve answer as a fast path does (a lease
	// resolved from a live connection alone) unless req.Confirm.
	unconfirmed bool
	// confirmDelay is how long a Resolve with req.Confirm takes (a
	// workspace started again, its wait).
	confirmDelay time.Duration
}

func (p *fakeProvider) record(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, s)
}

func (p *fakeProvider) lease() *provider.Lease {
	return &provider.Lease{ID: "cbx_0123456789ab", Slug: "blue", Provider: "fake", Workspace: "ws", Ref: "me/ws",
		Ready: true, State: provider.StateReady, Target: p.target}
}

func (p *fakeProvider) Name() string { return "fake" }
func (p *fakeProvider) Acquire(ctx context.Context, req provider.AcquireRequest) (*provider.Lease, error) {
	p.record("acquire slug=" + req.Slug)
	if p.acquireErr != nil {
		return nil, p.acquireErr
	}
	return p.lease(), nil
}
func (p *fakeProvider) Resolve(ctx context.Context, req provider.ResolveRequest) (*provider.Lease, error) {
	l := p.lease()
	if req.Confirm {
		p.record("resolve " + req.Ident + " confirm")
		time.Sleep(p.confirmDelay)
	} else {
		p.record("resolve " + req.Ident)
		l.Unconfirmed = p.unconfirmed
		l.ReadyUnchecked = p.unconfirmed && req.DeferReady
	}
	return l, nil
}
func (p *fakeProvider) Release(ctx context.Context, l *provider.Lease, req provider.ReleaseRequest) (provider.ReleaseResult, error) {
	p.record("release " + l.ID)
	return provider.ReleaseResult{Action: provider.ActionStop}, p.releaseErr
}
func (p *fakeProvider) List(context.Context, bool) ([]*provider.Lease, error) { return nil, nil }
func (p *fakeProvider) Cleanup(context.Context, provider.CleanupRequest) ([]provider.CleanupDecision, error) {
	return nil, nil
}
func (p *fakeProvider) Doctor(context.Context) provider.DoctorReport {
	return provider.DoctorReport{OK: true}
}
func (p *fakeProvider) ClaimMatches(claims.Claim, string) bool { return false }
func (p *fakeProvider) ReleaseFlags(*provider.Lease) []string  { return []string{"--fake-flag"} }

type harness struct {
	lb      *loopback
	prov    *fakeProvider
	store   *runs.Store
	deps    Deps
	notes   *bytes.Buffer
	out     *bytes.Buffer
	errOut  *bytes.Buffer
	repo    string
	workDir string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	state := t.TempDir()
	work := t.TempDir()
	lb := &loopback{}
	prov := &fakeProvider{target: lease.Target{User: "u", Host: "ws.fake", KnownHostsFile: filepath.Join(t.TempDir(), "kh", "ws"),
		WorkRoot: work, ReadyCheck: "true"}}
	h := &harness{lb: lb, prov: prov, store: runs.New(state), notes: &bytes.Buffer{}, out: &bytes.Buffer{}, errOut: &bytes.Buffer{},
		repo: t.TempDir(), workDir: work}
	pool := sshx.NewPool(lb, sshx.SessionOptions{TempDir: t.TempDir()})
	t.Cleanup(func() { pool.Close() })
	h.deps = Deps{Provider: prov, Tunnels: pool, Runner: lb, Runs: h.store, StateDir: state, Notes: h.notes,
		Owner: &owner.Checker{StateDir: state, Claims: claims.New(state), Now: time.Now, Warn: func(string) {}}}
	return h
}

func (h *harness) spec(argv ...string) Spec {
	return Spec{RepoRoot: h.repo, Argv: argv, NoSync: true, Env: map[string]string{"FOO": "bar"}, Stdout: h.out, Stderr: h.errOut}
}

func TestRunPassesExitCodesAndReleasesFreshLeases(t *testing.T) {
	for _, tc := range []struct {
		name        string
		argv        []string
		ident       string
		wantExit    int
		wantRelease bool
		wantState   string
	}{
		{"fresh success", []string{"true"}, "", 0, true, "succeeded"},
		{"fresh failure", []string{"sh", "-c", "exit 3"}, "", 3, true, "failed"},
		{"own 255", []string{"sh", "-c", "exit 255"}, "", 255, true, "failed"},
		{"reused lease kept", []string{"true"}, "blue", 0, false, "succeeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			s := h.spec(tc.argv...)
			s.Ident = tc.ident
			out, err := Run(context.Background(), h.deps, s)
			if out.Exit != tc.wantExit || exitcode.Code(err) != tc.wantExit || out.State != tc.wantState {
				t.Fatalf("exit %d (err %v, code %d) state %s; want %d %s\nnotes:\n%s", out.Exit, err, exitcode.Code(err), out.State, tc.wantExit, tc.wantState, h.notes)
			}
			released := slices.Contains(h.prov.calls, "release cbx_0123456789ab")
			if released != tc.wantRelease || out.Released != tc.wantRelease {
				t.Errorf("released=%v (outcome %v), want %v; provider calls %q", released, out.Released, tc.wantRelease, h.prov.calls)
			}
			if want := "crabbox stop --provider fake --fake-flag --id blue"; out.StopCommand != want {
				t.Errorf("stop command %q, want %q", out.StopCommand, want)
			}
			rec, err := h.store.Get(out.RunID)
			if err != nil {
				t.Fatal(err)
			}
			if rec.State != tc.wantState || rec.ExitCode == nil || *rec.ExitCode != tc.wantExit || rec.LeaseID != "cbx_0123456789ab" || rec.Provider != "fake" {
				t.Errorf("record %+v", rec)
			}
			if !strings.Contains(h.notes.String(), "provider=fake workspace=me/ws") {
				t.Errorf("no run line in notes:\n%s", h.notes)
			}
		})
	}
}

// The command really ran on the "workspace" with the forwarded and the
// run's variables, in the workdir; the owner record was written first.
func TestRunEnvironmentAndOwner(t *testing.T) {
	h := newHarness(t)
	out, err := Run(context.Background(), h.deps, h.spec("sh", "-c", `echo "$FOO $CRABBOX_LEASE_ID $CRABBOX_SLUG $CRABBOX_RUN_ID"; pwd`))
	if err != nil {
		t.Fatalf("run: %v\n%s", err, h.notes)
	}
	lines := strings.Split(strings.TrimSpace(h.out.String()), "\n")
	if len(lines) != 2 || lines[0] != "bar cbx_0123456789ab blue "+out.RunID {
		t.Fatalf("stdout %q", h.out)
	}
	if want := filepath.Join(h.workDir, "cbx_0123456789ab", filepath.Base(h.repo)); lines[1] != want {
		t.Errorf("ran in %q, want %q", lines[1], want)
	}
	if _, err := os.Stat(filepath.Join(h.workDir, remotecmd.OwnerFile)); err != nil {
		t.Errorf("owner record: %v", err)
	}
	log, _, _ := h.store.ReadLog(out.RunID, 0)
	if !strings.Contains(log, "bar cbx_0123456789ab") {
		t.Errorf("run log lacks the output: %q", log)
	}
}

// Another machine's owner record refuses the run before anything runs,
// and a refused fresh lease is still released.
func TestRunRefusedByAnotherOwner(t *testing.T) {
	h := newHarness(t)
	rec := `{"machineId":"other-machine","leaseId":"cbx_999999999999","createdAt":"2026-01-01T00:00:00Z"}`
	if err := os.WriteFile(filepath.Join(h.workDir, remotecmd.OwnerFile), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "ran")
	s := h.spec("touch", marker)
	s.Ident = "blue"
	out, err := Run(context.Background(), h.deps, s)
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "other-machine") {
		t.Fatalf("err %v (exit %d)", err, exitcode.Code(err))
	}
	if _, serr := os.Stat(marker); serr == nil {
		t.Error("the command ran on a machine another state dir owns")
	}
	if out.State != "failed" {
		t.Errorf("state %s", out.State)
	}
}

// A failed acquisition runs nothing and releases nothing.
func TestRunAcquireFailure(t *testing.T) {
	h := newHarness(t)
	h.prov.acquireErr = exitcode.Errorf(exitcode.NotFound, "no machine")
	out, err := Run(context.Background(), h.deps, h.spec("true"))
	if exitcode.Code(err) != exitcode.NotFound || out.Lease != nil || out.StopCommand != "" {
		t.Fatalf("err %v outcome %+v", err, out)
	}
	if !slices.Equal(h.prov.calls, []string{"acquire slug="}) {
		t.Errorf("provider calls %q", h.prov.calls)
	}
	for _, c := range h.lb.calls() {
		if strings.HasPrefix(c, "ssh") {
			t.Errorf("ssh ran after a failed acquire: %s", c)
		}
	}
}

// Cancelling the context stops the remote process group and records the
// run as interrupted (exit 130); the fresh lease is released.
func TestRunInterrupted(t *testing.T) {
	h := newHarness(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var out Outcome
	var err error
	go func() {
		defer close(done)
		out, err = Run(ctx, h.deps, h.spec("sh", "-c", "echo $$ > "+pidFile+"; exec sleep 60"))
	}()
	var pid []byte
	deadline := time.Now().Add(20 * time.Second)
	for len(pid) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		pid, _ = os.ReadFile(pidFile)
	}
	if len(pid) == 0 {
		t.Fatal("the command never started")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after the interrupt")
	}
	if exitcode.Code(err) != exitcode.Interrupted || out.State != "interrupted" || !out.Released {
		t.Fatalf("err %v state %s released %v", err, out.State, out.Released)
	}
	if _, serr := os.Stat("/proc/" + strings.TrimSpace(string(pid))); serr == nil {
		t.Errorf("remote command %s still running after the interrupt", strings.TrimSpace(string(pid)))
	}
	killed := false
	for _, c := range h.lb.calls() {
		killed = killed || strings.Contains(c, "kill -TERM")
	}
	if !killed {
		t.Error("no kill script ran")
	}
}

// A tunnel that drops mid-command (ssh 255, no exit file) is a transport
// failure (exit 7) whose message names the next step; the remote command
// is stopped.
func TestRunTunnelDropped(t *testing.T) {
	h := newHarness(t)
	h.lb.transport = "exec bash -lc"
	out, err := Run(context.Background(), h.deps, h.spec("true"))
	if exitcode.Code(err) != exitcode.Transport || !strings.Contains(err.Error(), "crabbox status blue") {
		t.Fatalf("err %v (exit %d)", err, exitcode.Code(err))
	}
	if out.State != "failed" || out.Exit != exitcode.Transport {
		t.Errorf("outcome %+v", out)
	}
}

// A failed release after a passing command is exit 7 and says so.
func TestRunReleaseFailure(t *testing.T) {
	h := newHarness(t)
	h.prov.releaseErr = errors.New("coder stop: boom")
	out, err := Run(context.Background(), h.deps, h.spec("true"))
	if exitcode.Code(err) != exitcode.Transport || !strings.Contains(err.Error(), "lease cleanup failed") || out.Released {
		t.Fatalf("err %v outcome released=%v", err, out.Released)
	}
	rec, _ := h.store.Get(out.RunID)
	// Positive control: the command itself passed.
	if strings.TrimSpace(h.out.String()) != "" || !slices.ContainsFunc(rec.Phases, func(p runs.Phase) bool { return p.Name == "release" }) {
		t.Fatalf("phases %+v", rec.Phases)
	}
	if rec.State != "failed" || rec.ExitCode == nil || *rec.ExitCode != exitcode.Transport || rec.FailedStep != StepRelease ||
		out.State != "failed" || out.Exit != exitcode.Transport {
		t.Errorf("record state=%s exit=%v step=%s, outcome %s/%d; want failed/7 in step release", rec.State, rec.ExitCode, rec.FailedStep, out.State, out.Exit)
	}
	last := rec.Phases[len(rec.Phases)-1]
	if last.Name != "release" || !strings.Contains(last.Error, "boom") {
		t.Errorf("release phase %+v", last)
	}
}

// A transport failure right after a fast-path resolve (the machine was
// stopping behind crabbox's back) resolves the lease again through the
// provider over a new tunnel, and the run goes on; the same failure after
// an ordinary resolve is final. (The sync's fall-back is the same call,
// covered on the lab by TestCoderRunIDAfterStopBehindBack.)
func TestRunFastPathTransportFallsBack(t *testing.T) {
	for _, tc := range []struct {
		name        string
		fail        string // remote line that fails once with 255
		unconfirmed bool
		wantCalls   []string
		wantExit    int
	}{
		// The owner check folded into the command's round trip (fast.go):
		// a dead connection fails before anything runs.
		{"owner check after fast path", ".crabbox-owner.json", true, []string{"resolve blue", "resolve blue confirm"}, 0},
		{"owner check after ordinary resolve", ".crabbox-owner.json", false, []string{"resolve blue"}, exitcode.Transport},
		// The owner check alone (--preflight takes the ordinary path): it
		// ran, then the connection failed.
		{"owner check alone after fast path", "preflight-alone", true, []string{"resolve blue", "resolve blue confirm"}, 0},
		{"owner check alone after ordinary resolve", "preflight-alone", false, []string{"resolve blue"}, exitcode.Transport},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.prov.unconfirmed = tc.unconfirmed
			h.prov.confirmDelay = 150 * time.Millisecond
			h.lb.transport, h.lb.transportOnce, h.lb.transportBefore = tc.fail, true, true
			s := h.spec("sh", "-c", "echo ran")
			s.Ident = "blue"
			if tc.fail == "preflight-alone" {
				h.lb.transport, h.lb.transportBefore = ".crabbox-owner.json", false
				s.Preflight = true
			}
			out, err := Run(context.Background(), h.deps, s)
			if exitcode.Code(err) != tc.wantExit {
				t.Fatalf("err %v (exit %d), want %d\nnotes:\n%s", err, exitcode.Code(err), tc.wantExit, h.notes)
			}
			// Positive control: the failing round trip really happened.
			if h.lb.transport != "" {
				t.Fatalf("no remote line matched %q: the failure was never injected", tc.fail)
			}
			if !slices.Equal(h.prov.calls, tc.wantCalls) {
				t.Errorf("provider calls %q, want %q", h.prov.calls, tc.wantCalls)
			}
			if tc.wantExit == 0 && (strings.TrimSpace(h.out.String()) != "ran" || out.State != "succeeded") {
				t.Errorf("stdout %q state %s", h.out, out.State)
			}
			// The second resolve is the lease's time in the summary.
			if ms, _ := out.Timing["leaseMs"].(int64); tc.unconfirmed && ms < h.prov.confirmDelay.Milliseconds() {
				t.Errorf("leaseMs = %v, want at least the %v the confirming resolve took", out.Timing["leaseMs"], h.prov.confirmDelay)
			}
		})
	}
}
