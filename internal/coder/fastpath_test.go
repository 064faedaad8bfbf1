package coder

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// The warm fast path (fastpath.go) over a fake `coder` and a fake `ssh`:
// the fake master "starts" by listening on its control socket and "exits"
// by removing it.

// machineDirs are the directories consecutive crabbox processes on one
// machine share.
type machineDirs struct{ master, config, tmp string }

func newMachine(t *testing.T) machineDirs {
	t.Helper()
	tmp, err := os.MkdirTemp("/tmp", "cbx") // short: a fallback socket dir goes here
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	return machineDirs{master: t.TempDir(), config: t.TempDir(), tmp: tmp}
}

// warmHarness is newHarness with a persistent ssh pool over the same fake,
// a fresh whoami cache naming alice, and scripted ssh replies.
// pre are replies that come before these defaults (execx.Fake queues
// replies per argv prefix), each given as {Stdout: prefix, reply fields}.
func warmHarness(t *testing.T, m machineDirs, pre ...execx.Reply) *harness {
	t.Helper()
	h := newHarness(t, nil)
	for _, r := range pre {
		h.fake.On(r.Stdout, execx.Reply{ExitCode: r.ExitCode, Stderr: r.Stderr})
	}
	h.p.ConfigDir = m.config
	h.p.Tunnels = sshx.NewPool(h, sshx.SessionOptions{Persist: 90 * time.Second, MasterDir: m.master, TempDir: m.tmp})
	h.p.Client.Cache = &WhoAmICache{Path: filepath.Join(t.TempDir(), "whoami.json"), Key: "k", TTL: time.Hour,
		Now: func() time.Time { return testNow }}
	h.p.Client.Cache.Store(WhoAmI{URL: coderURL, Username: "alice", UserID: "u1"})
	h.fake.On("ssh -f -N", execx.Reply{Do: func(c execx.Call) { listen(t, controlPath(c)) }})
	h.fake.On("ssh -O exit", execx.Reply{Do: func(c execx.Call) { unlisten(controlPath(c)) }})
	h.fake.On("ssh -o ServerAliveInterval=5", execx.Reply{}) // sessions through the master
	return h
}

func controlPath(c execx.Call) string {
	for _, a := range c.Args {
		if p, ok := strings.CutPrefix(a, "ControlPath="); ok {
			return p
		}
	}
	return ""
}

// fakeMasters are the listening sockets of the fake masters, by path: a
// master's liveness is a connect to its socket (sshx). They outlive the
// harness that started them, as a master outlives its crabbox process.
var fakeMasters sync.Map

func listen(t *testing.T, p string) {
	t.Helper()
	os.Remove(p)
	ln, err := net.Listen("unix", p)
	if err != nil {
		t.Error(err)
		return
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	fakeMasters.Store(p, ln)
	t.Cleanup(func() { unlisten(p) })
}

// unlisten ends the fake master at p (its socket goes with it).
func unlisten(p string) {
	if ln, ok := fakeMasters.LoadAndDelete(p); ok {
		ln.(net.Listener).Close()
	}
	os.Remove(p)
}

// killMasters ends every fake master without removing its socket file, as
// a master that died (SIGKILL, connection lost) leaves it.
func killMasters() {
	fakeMasters.Range(func(k, v any) bool {
		ln := v.(*net.UnixListener)
		ln.SetUnlinkOnClose(false)
		ln.Close()
		fakeMasters.Delete(k)
		return true
	})
}

// openReady is a Ready hook that opens the lease's (persistent) session.
func openReady(h *harness) ReadyFunc {
	return func(ctx context.Context, l *Lease) error {
		s, err := h.p.Tunnels.Get(l.Target)
		if err != nil {
			return err
		}
		return s.Open(ctx)
	}
}

func prepareReq(h *harness) ResolveRequest {
	return ResolveRequest{Ident: blueID, Mode: Prepare, RepoRoot: "/src/app", Ready: openReady(h), Open: openReady(h)}
}

// calls of one program, in order.
func callsOf(h *harness, prog string) []string {
	var out []string
	for _, a := range h.argvs() {
		if strings.HasPrefix(a, prog+" ") {
			out = append(out, a)
		}
	}
	return out
}

func hasCall(calls []string, prefix string) bool {
	for _, c := range calls {
		if strings.HasPrefix(c, prefix) {
			return true
		}
	}
	return false
}

// warmUp runs one ordinary Resolve that starts the persistent master and
// lets the process's pool go, as a finished crabbox run does.
func warmUp(t *testing.T, masterDir machineDirs) {
	t.Helper()
	h := warmHarness(t, masterDir)
	h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1"))
	h.whoami().list(readyRow("alice", blueName, "ws1"))
	if _, err := h.p.Resolve(context.Background(), prepareReq(h)); err != nil {
		t.Fatal(err)
	}
	if c := callsOf(h, "coder"); len(c) == 0 {
		t.Fatal("the first run called no coder: the control is broken")
	}
	if !hasCall(callsOf(h, "ssh"), "ssh -f -N") {
		t.Fatalf("the first run started no master: %q", h.argvs())
	}
	if err := h.p.Tunnels.Close(); err != nil {
		t.Fatal(err)
	}
	if hasCall(callsOf(h, "ssh"), "ssh -O exit") {
		t.Fatal("Close ended the persistent master")
	}
}

func TestWarmResolveUsesLiveMasterWithoutCoder(t *testing.T) {
	masterDir := newMachine(t)
	warmUp(t, masterDir)

	h := warmHarness(t, masterDir) // the next process
	h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1", "state", StateReady))
	l, err := h.p.Resolve(context.Background(), prepareReq(h))
	if err != nil {
		t.Fatal(err)
	}
	if c := callsOf(h, "coder"); len(c) != 0 {
		t.Fatalf("a warm run with a live master called coder: %q", c)
	}
	ssh := callsOf(h, "ssh")
	if len(ssh) != 1 || !strings.HasSuffix(ssh[0], "-- "+ReadyCheck) {
		t.Fatalf("ssh calls = %q; want the ready check through the master alone (no program checks the socket)", ssh)
	}
	if !l.Ready || l.WorkspaceID != "ws1" || l.Ref != blueRef || l.Target.ControlKey != "coder:ws1" {
		t.Fatalf("lease %+v", l)
	}
	if got := h.getClaim(blueID).Labels["last_touched_at"]; got != unixLabel(testNow) {
		t.Errorf("claim not touched: last_touched_at=%q", got)
	}
	// The session is open over the same master: a command does not start one.
	s, _ := h.p.Tunnels.Get(l.Target)
	if _, err := s.Run(context.Background(), "true", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if hasCall(callsOf(h, "ssh"), "ssh -f -N") {
		t.Error("a new master was started although one was live")
	}
}

func TestWarmResolveFallsBackWhenMasterIsDead(t *testing.T) {
	masterDir := newMachine(t)
	warmUp(t, masterDir)

	killMasters() // its socket file stays, nobody listens
	h := warmHarness(t, masterDir)
	h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1", "state", StateReady))
	h.whoami().list(readyRow("alice", blueName, "ws1"))
	l, err := h.p.Resolve(context.Background(), prepareReq(h))
	if err != nil {
		t.Fatalf("a dead master must fall back without an error: %v", err)
	}
	if !l.Ready {
		t.Fatalf("lease %+v", l)
	}
	if c := callsOf(h, "coder"); len(c) == 0 {
		t.Fatal("no coder call: the dead master was trusted")
	}
	ssh := callsOf(h, "ssh")
	if !strings.HasPrefix(ssh[0], "ssh -f -N") {
		t.Fatalf("ssh calls = %q; want a new master first", ssh)
	}
	for _, c := range ssh {
		if strings.HasSuffix(c, "-- "+ReadyCheck) && strings.Index(strings.Join(ssh, "\n"), c) < strings.Index(strings.Join(ssh, "\n"), "ssh -f -N") {
			t.Errorf("a session went through the dead master: %q", ssh)
		}
	}
}

func TestWarmResolveEndsMasterThatFailsTheReadyCheck(t *testing.T) {
	masterDir := newMachine(t)
	warmUp(t, masterDir)

	h := warmHarness(t, masterDir, execx.Reply{Stdout: "ssh -o ServerAliveInterval=5", ExitCode: 255, Stderr: "broken pipe"})
	h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1", "state", StateReady))
	h.whoami().list(readyRow("alice", blueName, "ws1"))
	if _, err := h.p.Resolve(context.Background(), prepareReq(h)); err != nil {
		t.Fatalf("fallback: %v", err)
	}
	ssh := callsOf(h, "ssh")
	if len(ssh) < 2 || !strings.HasSuffix(ssh[0], "-- "+ReadyCheck) || !strings.HasPrefix(ssh[1], "ssh -O exit") {
		t.Fatalf("ssh calls = %q; want the failed ready check, then -O exit", ssh)
	}
	if len(callsOf(h, "coder")) == 0 {
		t.Fatal("no ordinary path after the failed check")
	}
}

func TestWarmResolveNeverUsesAnotherWorkspacesMaster(t *testing.T) {
	masterDir := newMachine(t)
	warmUp(t, masterDir) // a master for ws1

	// The workspace was deleted and recreated under the same name: the
	// claim now records ws2.
	h := warmHarness(t, masterDir)
	h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws2", "state", StateReady))
	h.whoami().list(readyRow("alice", blueName, "ws2"))
	if _, err := h.p.Resolve(context.Background(), prepareReq(h)); err != nil {
		t.Fatal(err)
	}
	if len(callsOf(h, "coder")) == 0 {
		t.Fatal("ws2 used without a listing")
	}
	if ssh := callsOf(h, "ssh"); !strings.HasPrefix(ssh[0], "ssh -f -N") {
		t.Errorf("ws1's master was used for ws2: %q", ssh)
	}
	if !hasCall(callsOf(h, "ssh"), "ssh -f -N") {
		t.Errorf("no new master for ws2: %q", callsOf(h, "ssh"))
	}
}

func TestWarmResolveNeedsPersistAndCachedWhoami(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(h *harness)
	}{
		{"persist 0", func(h *harness) { h.p.Tunnels = sshx.NewPool(h, sshx.SessionOptions{}) }},
		{"no whoami cache", func(h *harness) { os.Remove(h.p.Client.Cache.Path) }},
		{"claim not ready", func(h *harness) {
			h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1", "state", StateStopped))
		}},
		{"reclaim", func(h *harness) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			masterDir := newMachine(t)
			warmUp(t, masterDir)
			h := warmHarness(t, masterDir)
			h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1", "state", StateReady))
			h.whoami().list(readyRow("alice", blueName, "ws1"))
			tc.mod(h)
			req := prepareReq(h)
			req.Reclaim = tc.name == "reclaim"
			if _, err := h.p.Resolve(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			if len(callsOf(h, "coder")) == 0 {
				t.Fatalf("fast path taken: %q", h.argvs())
			}
			if tc.name == "reclaim" && hasCall(callsOf(h, "ssh"), "ssh -O exit") {
				// Another run on this machine may be using it.
				t.Errorf("--reclaim ended the shared master: %q", callsOf(h, "ssh"))
			}
		})
	}
}

func TestReleaseEndsPersistentMasterBeforeStop(t *testing.T) {
	masterDir := newMachine(t)
	warmUp(t, masterDir)

	h := warmHarness(t, masterDir)
	h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1", "state", StateReady))
	h.whoami().list(readyRow("alice", blueName, "ws1"))
	h.fake.On("coder stop", execx.Reply{})
	l, err := h.p.Resolve(context.Background(), ResolveRequest{Ident: blueID, Mode: ReleaseOnly})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.p.Release(context.Background(), l, ReleaseRequest{RepoRoot: "/src/app"}); err != nil {
		t.Fatal(err)
	}
	var exitAt, stopAt = -1, -1
	for i, a := range h.argvs() {
		switch {
		case strings.HasPrefix(a, "ssh -O exit") && exitAt < 0:
			exitAt = i
		case strings.HasPrefix(a, "coder stop"):
			stopAt = i
		}
	}
	if exitAt < 0 || stopAt < 0 || exitAt > stopAt {
		t.Fatalf("calls = %q; want ssh -O exit before coder stop", h.argvs())
	}
	// The socket is gone: a later run cannot find it.
	h2 := warmHarness(t, masterDir)
	h2.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1", "state", StateReady))
	h2.whoami().list(readyRow("alice", blueName, "ws1"))
	if _, err := h2.p.Resolve(context.Background(), prepareReq(h2)); err != nil {
		t.Fatal(err)
	}
	if len(callsOf(h2, "coder")) == 0 {
		t.Errorf("a stopped lease's master was left behind (no listing): %q", h2.argvs())
	}
}

// The tunnel opened during the listing goes by name; its master is keyed
// by the claim's workspace ID. When the listing does not confirm that ID
// (the workspace was deleted and recreated under the same name), the
// master must not outlive the run, or the next run's fast path would take
// the new workspace for the claim's. Positive control: a confirmed
// listing keeps it.
func TestSpeculativeMasterEndedUnlessListingConfirms(t *testing.T) {
	for _, tc := range []struct {
		name    string
		row     wsRow
		wantErr bool
		ended   bool
	}{
		{"recreated under the same name", readyRow("alice", blueName, "ws2"), true, true},
		{"confirmed", readyRow("alice", blueName, "ws1"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t)
			h := warmHarness(t, m)
			h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1", "state", StateReady))
			h.whoami()
			// The listing answers only once the speculative master is up.
			h.fake.On(argvList, execx.Reply{Stdout: rowsJSON(tc.row), Do: func(execx.Call) {
				deadline := time.Now().Add(5 * time.Second)
				for !hasCall(callsOf(h, "ssh"), "ssh -f -N") && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
			}})
			_, err := h.p.Resolve(context.Background(), prepareReq(h))
			if (err != nil) != tc.wantErr {
				t.Fatalf("Resolve error %v, want error %v", err, tc.wantErr)
			}
			ssh := callsOf(h, "ssh")
			if !hasCall(ssh, "ssh -f -N") {
				t.Fatalf("no speculative master was started: %q", ssh)
			}
			if got := hasCall(ssh, "ssh -O exit"); got != tc.ended {
				t.Errorf("master ended = %v, want %v: %q", got, tc.ended, ssh)
			}
			if err := h.p.Tunnels.Close(); err != nil {
				t.Fatal(err)
			}
			// The next run: with the master ended it finds none and lists.
			h2 := warmHarness(t, m)
			h2.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1", "state", StateReady))
			h2.whoami().list(tc.row)
			h2.p.Resolve(context.Background(), prepareReq(h2))
			if fast := len(callsOf(h2, "coder")) == 0; fast == tc.ended {
				t.Errorf("next run took the fast path = %v, want %v: %q", fast, !tc.ended, h2.argvs())
			}
		})
	}
}

// With DeferReady the caller carries the ready check in its own first
// round trip: the warm resolve starts no program at all and says the
// check is still to do (positive control: without DeferReady the same
// resolve runs it, TestWarmResolveUsesLiveMasterWithoutCoder).
func TestWarmResolveDefersReadyCheck(t *testing.T) {
	masterDir := newMachine(t)
	warmUp(t, masterDir)

	h := warmHarness(t, masterDir)
	h.claim(coderClaim(blueID, "blue-lobster", blueRef, "ws1", "state", StateReady))
	req := prepareReq(h)
	req.DeferReady = true
	l, err := h.p.Resolve(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if c := callsOf(h, "coder"); len(c) != 0 {
		t.Fatalf("called coder: %q", c)
	}
	if ssh := callsOf(h, "ssh"); len(ssh) != 0 {
		t.Fatalf("ssh calls = %q; want none (the socket is checked by a connect)", ssh)
	}
	if !l.Unconfirmed || !l.ReadyUnchecked || l.Target.ReadyCheck != ReadyCheck {
		t.Fatalf("lease unconfirmed=%v readyUnchecked=%v check=%q", l.Unconfirmed, l.ReadyUnchecked, l.Target.ReadyCheck)
	}
}
