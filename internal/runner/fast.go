package runner

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/owner"
	"github.com/crabbox-dev/crabbox/internal/remotecmd"
	"github.com/crabbox-dev/crabbox/internal/sshx"
	"github.com/crabbox-dev/crabbox/internal/syncer"
)

// The warm run's one round trip (issue 13, item 3): the owner check, the
// sync's skip check and the command go to the machine as one command line
// (remotecmd.FastLine). Until the machine prints the go marker on stderr
// nothing reaches the user: stdout is held, stderr is read as the
// protocol's, and the command's own stdin is not read. Then the held
// output is let through and the run is the ordinary command. Without the
// marker the answer is a verdict: the owner's refusal, "sync needed" (the
// run goes on with the sync, the owner record already written), or
// anything else, after which the run goes on exactly as without the fast
// path.

// fastVerdict is how a fast attempt ended.
type fastVerdict int

const (
	fastRan        fastVerdict = iota // the command ran (code and error are its own)
	fastSyncNeeded                    // owner recorded; sync, then run the command
	fastFallback                      // nothing that counts happened: the ordinary path
	fastFailed                        // the run ends with the error (refusal, interrupt, transport)
)

// fastWait bounds the wait for the verdict, like the owner check's own
// round trip (owner.Timeout).
var fastWait = owner.Timeout

// maxHeld bounds what is held back before the marker (login noise).
const maxHeld = 1 << 20

// fastGate holds a fast attempt's output until the marker.
type fastGate struct {
	marker string
	shell  string           // the line after which stderr is the login shell's (remotecmd.FastShellMarker)
	onGo   func(pre string) // at the marker (with the protocol's lines before it), before any held output goes on
	out    io.Writer
	errw   io.Writer

	mu      sync.Mutex
	started bool
	ended   bool
	line    []byte       // the stderr line in progress
	pre     bytes.Buffer // the protocol's stderr lines (before the shell line)
	inShell bool         // the shell line came
	shellb  bytes.Buffer // the login shell's stderr lines before the marker: shown at the marker
	held    bytes.Buffer // stdout before the marker
	goCh    chan struct{}
	endCh   chan struct{}
	sentCh  chan struct{} // the attempt's stdin header (the fingerprint) was written
	sent    sync.Once
}

func newFastGate(marker, shell string, out, errw io.Writer, onGo func(pre string)) *fastGate {
	return &fastGate{marker: marker, shell: shell, onGo: onGo, out: out, errw: errw, goCh: make(chan struct{}), endCh: make(chan struct{}), sentCh: make(chan struct{})}
}

// headerSent: the machine has all it needs for the verdict.
func (g *fastGate) headerSent() { g.sent.Do(func() { close(g.sentCh) }) }

type gateOut struct{ g *fastGate }
type gateErr struct{ g *fastGate }

func (w gateOut) Write(p []byte) (int, error) {
	g := w.g
	g.mu.Lock()
	if g.started {
		g.mu.Unlock()
		return g.out.Write(p)
	}
	if !g.ended && g.held.Len() < maxHeld {
		g.held.Write(p[:min(len(p), maxHeld-g.held.Len())])
	}
	g.mu.Unlock()
	return len(p), nil
}

func (w gateErr) Write(p []byte) (int, error) {
	g := w.g
	g.mu.Lock()
	if g.started {
		g.mu.Unlock()
		return g.errw.Write(p)
	}
	if g.ended {
		g.mu.Unlock()
		return len(p), nil
	}
	rest := p
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			if len(g.line) < maxHeld {
				g.line = append(g.line, rest[:min(len(rest), maxHeld-len(g.line))]...)
			}
			break
		}
		g.line = append(g.line, rest[:i]...)
		rest = rest[i+1:]
		if string(g.line) == g.marker {
			g.line = nil
			g.onGo(g.pre.String())
			_, err := g.errw.Write(g.shellb.Bytes())
			if err == nil {
				_, err = g.out.Write(g.held.Bytes())
			}
			g.held.Reset()
			g.shellb.Reset()
			g.started = true
			close(g.goCh)
			g.mu.Unlock()
			if err == nil && len(rest) > 0 {
				_, err = g.errw.Write(rest)
			}
			if err != nil {
				return 0, err
			}
			return len(p), nil
		}
		switch {
		case g.shell != "" && string(g.line) == g.shell:
			g.inShell = true
		case g.inShell:
			addLine(&g.shellb, g.line)
		default:
			addLine(&g.pre, g.line)
		}
		g.line = g.line[:0]
	}
	g.mu.Unlock()
	return len(p), nil
}

// addLine adds a held line to b, up to maxHeld.
func addLine(b *bytes.Buffer, line []byte) {
	if b.Len() < maxHeld {
		b.Write(line)
		b.WriteByte('\n')
	}
}

// end is called once the attempt's ssh has exited.
func (g *fastGate) end() (started bool, pre string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.ended {
		g.ended = true
		close(g.endCh)
	}
	return g.started, g.pre.String() + g.shellb.String() + string(g.line)
}

func (g *fastGate) hasStarted() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.started
}

// waitGo is the command input's gate: true once the command starts, false
// when the attempt ended without starting it (its input stays unread).
func (g *fastGate) waitGo() bool {
	select {
	case <-g.goCh:
		return true
	case <-g.endCh:
		select {
		case <-g.goCh:
			return true
		default:
			return false
		}
	}
}

// fastAttempt is what a fast attempt needs beyond the command.
type fastAttempt struct {
	ownerScript string              // "" when the provider keeps the owner record
	scan        *pendingScan        // nil with --no-sync
	announce    func()              // the run line
	onSkip      func(time.Duration) // the sync was skipped (check took that long)
}

// pendingScan is the sync's scan, running beside the fast attempt.
type pendingScan struct {
	done chan struct{}
	plan *syncer.Plan
	fp   string // "" when the plan cannot be skipped: the machine then answers "sync needed"
}

func startScan(ctx context.Context, r *run, so syncer.Options) *pendingScan {
	p := &pendingScan{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.plan = r.scan(ctx, so)
		if fp, ok := p.plan.FastFingerprint(so); ok {
			p.fp = fp
		}
	}()
	return p
}

// wait is the plan, once the scan has ended.
func (p *pendingScan) wait() *syncer.Plan {
	<-p.done
	return p.plan
}

// fast runs the fast attempt: the command, unless the verdict sends the run
// the ordinary way. sess is replaced when a transport failure right after a
// fast-path resolve made the lease resolve again.
func (r *run) fast(ctx context.Context, sess **sshx.Session, workdir string, p remotecmd.Params, a fastAttempt) (fastVerdict, int, error) {
	d, s, l := r.d, r.s, r.lease
	ready := ""
	if l.ReadyUnchecked {
		ready = l.Target.ReadyCheck
	}
	rc := remotecmd.FastLine(remotecmd.FastParams{
		Ready: ready, Owner: a.ownerScript, Compare: a.scan != nil, Hook: r.syncHook(), Command: p,
	})
	var sent atomic.Pointer[time.Time] // when the fingerprint went
	g := newFastGate(remotecmd.FastMarker(r.runID), remotecmd.FastShellMarker(r.runID), nil, nil, func(pre string) {
		r.linePassed(a, pre)
		if a.scan != nil {
			check := time.Duration(0)
			if t := sent.Load(); t != nil {
				check = d.Now().Sub(*t)
			}
			a.onSkip(check)
		}
		r.announceCommand(l)
		r.step = StepCommand
	})
	// The command's files go at once (the machine writes them while the
	// scan runs), the fingerprint when the scan has ended.
	header := func(w io.Writer) error {
		if _, err := io.WriteString(w, rc.Stdin); err != nil {
			return err
		}
		fp := ""
		if a.scan != nil {
			a.scan.wait()
			fp = a.scan.fp
		}
		now := d.Now()
		sent.Store(&now)
		_, err := io.WriteString(w, fp+"\n")
		return err
	}
	code, capErr, err, started := r.runCommand(ctx, *sess, rc, rc.Line, header, g)
	if started {
		if err != nil {
			return fastFailed, code, err
		}
		code, err = r.afterCommand(ctx, *sess, workdir, rc, code, capErr)
		return fastRan, code, err
	}
	if ctx.Err() != nil {
		// The command may have started just as the interrupt came, its
		// marker unread: stop it (a no-op when it never started).
		r.stopRemoteQuiet(ctx, *sess, rc.PIDFile)
		return fastFailed, exitcode.Interrupted, context.Canceled
	}
	_, pre := g.end()
	switch {
	case err != nil && exitcode.Code(err) == exitcode.Transport && r.mayReconfirm(ctx, err):
		ns, rerr := r.reconfirm(ctx, *sess, err)
		if rerr != nil {
			return fastFailed, -1, rerr
		}
		*sess = ns
		return fastFallback, 0, nil
	case err != nil:
		return fastFailed, -1, err
	}
	if code == remotecmd.FastNotReady && ready != "" && strings.Contains(pre, remotecmd.FastNotReadyLine(r.runID)) {
		// The live connection answered, the workspace did not pass its
		// ready check: ask the provider, as the ordinary resolve would.
		ns, rerr := r.reconfirm(ctx, *sess, errors.New("its ready check failed"))
		if rerr != nil {
			return fastFailed, -1, rerr
		}
		*sess = ns
		return fastFallback, 0, nil
	}
	l.ReadyUnchecked = false // the line got past the check
	hasOwner := strings.Contains(pre, "crabbox-owner owner ")
	switch {
	case code == remotecmd.FastSyncNeeded && strings.Contains(pre, remotecmd.FastSyncLine(r.runID)):
		r.linePassed(a, pre)
		return fastSyncNeeded, 0, nil
	case a.ownerScript != "" && hasOwner && code != 0:
		res, perr := owner.ParseResult(l, code, pre, lastProtocolLine(pre))
		if perr != nil {
			return fastFailed, -1, perr
		}
		if derr := d.Owner.Decide(l, s.Reclaim, res, takeOverRun); derr != nil {
			if l.Adopted {
				r.lease = nil // its claim is gone again: no "kept" hint
			}
			return fastFailed, -1, derr
		}
	}
	return fastFallback, 0, nil
}

// ownerPassed is the verdict of an owner check that passed inside the
// fast attempt (pre holds its lines): Decide says so when --reclaim took
// the lease over from another machine, as Claim does on the ordinary path.
func (r *run) ownerPassed(a fastAttempt, pre string) {
	if a.ownerScript == "" || !strings.Contains(pre, "crabbox-owner owner ") {
		return
	}
	res, err := owner.ParseResult(r.lease, 0, pre, "")
	if err == nil {
		_ = r.d.Owner.Decide(r.lease, r.s.Reclaim, res, takeOverRun) // code 0: never a refusal
	}
}

// linePassed reports a fast line that got past its owner check and the
// sync's hook (pre holds its lines): the owner verdict, the run line, and
// what the hook said for the user, as the sync's prepare step shows it.
func (r *run) linePassed(a fastAttempt, pre string) {
	r.ownerPassed(a, pre)
	a.announce()
	for _, n := range remotecmd.HookNotes(pre) {
		r.syncReport(syncer.Event{Kind: "warning", Message: "sync warning: " + n})
	}
}

// takeOverRun is the owner refusal's take-over command for a run.
func takeOverRun(ident string) string { return "crabbox run --reclaim --id " + ident + " -- …" }

// lastProtocolLine is the last line of pre that is not a verdict line.
func lastProtocolLine(pre string) string {
	lines := strings.Split(strings.TrimSpace(pre), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.HasPrefix(lines[i], "crabbox-owner ") {
			return lines[i]
		}
	}
	return ""
}

// withVerdictDeadline is ctx for an attempt's ssh that is cancelled when no
// verdict came within fastWait of the fingerprint going (the scan's own
// time does not count); timedOut reports that it was.
func withVerdictDeadline(ctx context.Context, g *fastGate) (context.Context, func(), func() bool) {
	cctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	fired := false
	var t *time.Timer
	stopped := make(chan struct{})
	go func() {
		select {
		case <-g.sentCh:
		case <-stopped:
			return
		}
		mu.Lock()
		defer mu.Unlock()
		select {
		case <-stopped:
			return // stopped as the fingerprint went
		default:
		}
		t = time.AfterFunc(fastWait, func() {
			if !g.hasStarted() {
				mu.Lock()
				fired = true
				mu.Unlock()
				cancel()
			}
		})
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			close(stopped)
			mu.Lock()
			if t != nil {
				t.Stop()
			}
			mu.Unlock()
			cancel()
		})
	}
	return cctx, stop, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return fired
	}
}

// fastTimeoutError is the verdict that never came.
func fastTimeoutError(ws string) error {
	return exitcode.Errorf(exitcode.Transport, "no answer from %s to the owner and sync check within %s; %s", ws, fastWait, exitcode.NextAction("retry"))
}
