package runner

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/remotecmd"
	"github.com/crabbox-dev/crabbox/internal/syncer"
)

// newSyncHarness is a harness whose runs sync a real git repository into
// the "workspace" (rsync runs with a remote shell that is this machine).
func newSyncHarness(t *testing.T) *harness {
	t.Helper()
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Skip("rsync not installed")
	}
	// The developer's git config stays out: with no include in the config
	// files, origin's URL is read from them, not asked of git.
	t.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	h := newHarness(t)
	rsh := filepath.Join(t.TempDir(), "fake-ssh")
	script := "#!/bin/bash\n# fake-ssh [-l user] host command...\nif [ \"$1\" = -l ]; then shift 2; fi\nshift\nexec bash -c \"$*\"\n"
	if err := os.WriteFile(rsh, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	h.lb.rsh = rsh
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-C", h.repo}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	h.writeRepo(t, "a.txt", "alpha\n")
	git("add", "-A")
	git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "c")
	return h
}

// newWarmHarness is newSyncHarness after a first run synced the tree.
func newWarmHarness(t *testing.T) *harness {
	t.Helper()
	h := newSyncHarness(t)
	if _, err := Run(context.Background(), h.deps, h.syncSpec("true")); err != nil {
		t.Fatalf("first run: %v\n%s", err, h.notes)
	}
	return h
}

func (h *harness) writeRepo(t *testing.T, rel, content string) {
	t.Helper()
	p := filepath.Join(h.repo, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) syncSpec(argv ...string) Spec {
	s := h.spec(argv...)
	s.NoSync, s.Ident = false, "blue"
	s.Sync = syncer.DefaultOptions()
	return s
}

// sessions are the remote command lines the run sent over ssh since
// call index from, and how many git processes it ran.
func (h *harness) sessions(from int) (lines []string, git int) {
	for _, c := range h.lb.calls()[from:] {
		switch {
		case strings.HasPrefix(c, "git "):
			git++
		case strings.HasPrefix(c, "ssh ") && strings.Contains(c, " -- "):
			lines = append(lines, c)
		}
	}
	return lines, git
}

// A warm run with nothing changed is one round trip (owner check, skip
// check and command together) and one git process (the scan's status:
// the repository name is read from its config); output, exit code and the record are as for a sync
// that was skipped.
func TestRunWarmNoChangeOneRoundTrip(t *testing.T) {
	h := newWarmHarness(t)
	first, _ := h.sessions(0)
	if len(first) < 3 {
		t.Fatalf("the first run used %d round trips, a sync needs more:\n%s", len(first), strings.Join(first, "\n"))
	}
	from := len(h.lb.calls())
	h.notes.Reset()
	out, err := Run(context.Background(), h.deps, h.syncSpec("sh", "-c", "cat a.txt; echo oops >&2"))
	if err != nil || out.Exit != 0 {
		t.Fatalf("exit %d err %v\n%s", out.Exit, err, h.notes)
	}
	lines, git := h.sessions(from)
	if git != 1 {
		for _, c := range h.lb.calls()[from:] {
			if strings.HasPrefix(c, "git ") {
				t.Log(c)
			}
		}
	}
	if len(lines) != 1 || git != 1 {
		t.Errorf("warm run: %d round trips, %d git processes; want 1 and 1 (status):\n%s", len(lines), git, strings.Join(lines, "\n"))
	}
	if h.out.String() != "alpha\n" {
		t.Errorf("stdout %q", h.out)
	}
	if !strings.HasSuffix(h.errOut.String(), "oops\n") || strings.Contains(h.errOut.String(), "crabbox-") {
		t.Errorf("stderr %q: the command's, without the protocol's lines", h.errOut)
	}
	notes := h.notes.String()
	iRun, iSkip, iRunning := strings.Index(notes, "run "+out.RunID), strings.Index(notes, "No changes detected, skipping sync"), strings.Index(notes, "running on ws")
	if iRun < 0 || iSkip < iRun || iRunning < iSkip {
		t.Errorf("notes out of order or missing:\n%s", notes)
	}
	rec, err := h.store.Get(out.RunID)
	if err != nil {
		t.Fatal(err)
	}
	var phases []string
	for _, p := range rec.Phases {
		phases = append(phases, p.Name+map[bool]string{true: "(skipped)"}[p.Skipped])
	}
	want := []string{"sync.manifest", "sync.fingerprint", "sync.prepare", "sync.rsync(skipped)", "sync.finalize(skipped)", "release(skipped)"}
	if !rec.SyncSkipped || !slices.Equal(phases, want) || rec.Workdir == "" || rec.LeaseID != "cbx_0123456789ab" {
		t.Errorf("record: skipped=%v phases %q (want %q) workdir %q lease %q", rec.SyncSkipped, phases, want, rec.Workdir, rec.LeaseID)
	}
	log, _, _ := h.store.ReadLog(out.RunID, 0)
	if !strings.Contains(log, "alpha") || strings.Contains(log, "crabbox-fast") {
		t.Errorf("log %q", log)
	}
	// The command's exit code is the run's.
	from = len(h.lb.calls())
	if out, err := Run(context.Background(), h.deps, h.syncSpec("sh", "-c", "exit 3")); exitcode.Code(err) != 3 || out.Exit != 3 || out.State != "failed" {
		t.Errorf("exit %d err %v state %s", out.Exit, err, out.State)
	}
	if lines, _ := h.sessions(from); len(lines) != 1 {
		t.Errorf("a failing command: %d round trips, want 1", len(lines))
	}
}

// A change answers "sync needed": the run syncs and runs the command as
// without the fast path, and piped stdin reaches the command whole (the
// attempt that did not start it read none of it).
func TestRunFastSyncNeededKeepsStdin(t *testing.T) {
	h := newSyncHarness(t)
	if _, err := Run(context.Background(), h.deps, h.syncSpec("true")); err != nil {
		t.Fatalf("first run: %v\n%s", err, h.notes)
	}
	h.writeRepo(t, "a.txt", "changed\n")
	from := len(h.lb.calls())
	h.out.Reset()
	payload := random(t, 1<<20)
	s := h.syncSpec("sh", "-c", "cat a.txt; sha256sum | cut -c1-64")
	s.Stdin = bytes.NewReader(payload)
	out, err := runBounded(t, context.Background(), h, s)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, h.notes)
	}
	if want := "changed\n" + sha(payload) + "\n"; h.out.String() != want {
		t.Errorf("stdout %q, want %q", h.out, want)
	}
	lines, _ := h.sessions(from)
	if len(lines) < 3 || !strings.Contains(lines[0], "crabbox-fast") {
		t.Errorf("round trips:\n%s", strings.Join(lines, "\n"))
	}
	rec, _ := h.store.Get(out.RunID)
	if rec.SyncSkipped {
		t.Error("record says the sync was skipped")
	}
	// And the next run is one round trip again.
	from = len(h.lb.calls())
	if _, err := Run(context.Background(), h.deps, h.syncSpec("true")); err != nil {
		t.Fatal(err)
	}
	if lines, _ := h.sessions(from); len(lines) != 1 {
		t.Errorf("after the sync: %d round trips, want 1", len(lines))
	}
}

// Another machine's owner record refuses the fast attempt: nothing runs,
// and the record is not rewritten.
func TestRunFastRefusedByAnotherOwner(t *testing.T) {
	h := newSyncHarness(t)
	if _, err := Run(context.Background(), h.deps, h.syncSpec("true")); err != nil {
		t.Fatalf("first run: %v\n%s", err, h.notes)
	}
	rec := `{"machineId":"other-machine","leaseId":"cbx_999999999999","createdAt":"2026-01-01T00:00:00Z"}`
	ownerFile := filepath.Join(h.workDir, remotecmd.OwnerFile)
	if err := os.WriteFile(ownerFile, []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "ran")
	from := len(h.lb.calls())
	_, err := Run(context.Background(), h.deps, h.syncSpec("touch", marker))
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "other-machine") || !strings.Contains(err.Error(), "crabbox run --reclaim --id") {
		t.Fatalf("err %v (exit %d)", err, exitcode.Code(err))
	}
	if _, serr := os.Stat(marker); serr == nil {
		t.Error("the command ran on a machine another state dir owns")
	}
	if b, _ := os.ReadFile(ownerFile); string(b) != rec {
		t.Errorf("owner record changed: %s", b)
	}
	if lines, _ := h.sessions(from); len(lines) != 1 {
		t.Errorf("%d round trips for a refusal, want 1", len(lines))
	}
}

// The gate: nothing passes before the marker (split across writes), the
// held stdout follows onGo, and what follows the marker passes.
func TestFastGate(t *testing.T) {
	var out, errb, order bytes.Buffer
	g := newFastGate("crabbox-fast r go", "crabbox-fast r shell", &out, &errb, func(string) { order.WriteString("go;") })
	o, e := gateOut{g}, gateErr{g}
	o.Write([]byte("noise-out\n"))
	e.Write([]byte("crabbox-owner owner - - -\nlogin noise\ncrabbox-fa"))
	if out.Len() != 0 || errb.Len() != 0 || order.Len() != 0 {
		t.Fatalf("passed before the marker: %q %q", out.String(), errb.String())
	}
	e.Write([]byte("st r go\ncommand err\n"))
	o.Write([]byte("command out\n"))
	started, pre := g.end()
	if !started || order.String() != "go;" || out.String() != "noise-out\ncommand out\n" || errb.String() != "command err\n" {
		t.Errorf("started=%v order %q out %q err %q", started, order.String(), out.String(), errb.String())
	}
	if pre != "crabbox-owner owner - - -\nlogin noise\n" {
		t.Errorf("pre %q", pre)
	}
	if !g.waitGo() {
		t.Error("waitGo false after the marker")
	}
	// Without the marker nothing passes and the input stays unread.
	out.Reset()
	g2 := newFastGate("crabbox-fast r go", "crabbox-fast r shell", &out, &errb, func(string) { t.Error("onGo without a marker") })
	gateOut{g2}.Write([]byte("x\n"))
	gateErr{g2}.Write([]byte("crabbox-fast r sync\n"))
	if started, pre := g2.end(); started || pre != "crabbox-fast r sync\n" || out.Len() != 0 || g2.waitGo() {
		t.Errorf("started=%v pre %q out %q", started, pre, out.String())
	}
}

// --reclaim of a lease another machine owns says it took the lease over
// when the owner check rode in the fast attempt, whether the command ran
// at once (tree unchanged) or the tree needed a sync first; and the record
// is this machine's afterwards.
func TestRunFastReclaimSaysTookOver(t *testing.T) {
	for _, changed := range []bool{false, true} {
		t.Run(map[bool]string{false: "unchanged", true: "sync needed"}[changed], func(t *testing.T) {
			h := newSyncHarness(t)
			var warned []string
			h.deps.Owner.Warn = func(msg string) { warned = append(warned, msg) }
			if _, err := Run(context.Background(), h.deps, h.syncSpec("true")); err != nil {
				t.Fatalf("first run: %v\n%s", err, h.notes)
			}
			rec := `{"machineId":"other-machine","leaseId":"cbx_999999999999","createdAt":"2026-01-01T00:00:00Z"}`
			ownerFile := filepath.Join(h.workDir, remotecmd.OwnerFile)
			if err := os.WriteFile(ownerFile, []byte(rec), 0o600); err != nil {
				t.Fatal(err)
			}
			if changed {
				h.writeRepo(t, "a.txt", "beta\n")
			}
			s := h.syncSpec("echo", "ran")
			s.Reclaim = true
			if _, err := Run(context.Background(), h.deps, s); err != nil {
				t.Fatalf("reclaim run: %v\n%s", err, h.notes)
			}
			if !strings.Contains(h.out.String(), "ran") {
				t.Fatalf("the command did not run: %q", h.out)
			}
			if len(warned) != 1 || !strings.Contains(warned[0], "took over lease cbx_0123456789ab") || !strings.Contains(warned[0], "other-machine") {
				t.Errorf("warnings %q, want one take-over from other-machine", warned)
			}
			if b, _ := os.ReadFile(ownerFile); strings.Contains(string(b), "other-machine") {
				t.Errorf("owner record still the other machine's: %s", b)
			}
		})
	}
}

// A fast-path resolve leaves the ready check to the run (DeferReady): it
// travels inside the one round trip, not as an ssh of its own; when it
// fails there, or alone before a run that makes no fast attempt
// (--preflight), the lease is resolved again through the provider and
// the run goes on. Positive control: the check ran (its marker file).
func TestRunDeferredReadyCheck(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pass      bool
		preflight bool
		wantCalls []string
	}{
		{"passes in the fast line", true, false, []string{"resolve blue"}},
		{"fails in the fast line", false, false, []string{"resolve blue", "resolve blue confirm"}},
		{"passes alone", true, true, []string{"resolve blue"}},
		{"fails alone", false, true, []string{"resolve blue", "resolve blue confirm"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.prov.unconfirmed = true
			ran := filepath.Join(t.TempDir(), "ready-ran")
			h.prov.target.ReadyCheck = "touch " + ran + " && " + map[bool]string{true: "true", false: "false"}[tc.pass]
			s := h.spec("sh", "-c", "echo ran")
			s.Ident, s.Preflight = "blue", tc.preflight
			out, err := Run(context.Background(), h.deps, s)
			if err != nil {
				t.Fatalf("err %v\nnotes:\n%s", err, h.notes)
			}
			if _, serr := os.Stat(ran); serr != nil {
				t.Fatalf("the ready check never ran: %v", serr)
			}
			if !slices.Equal(h.prov.calls, tc.wantCalls) {
				t.Errorf("provider calls %q, want %q", h.prov.calls, tc.wantCalls)
			}
			alone := 0
			for _, c := range h.lb.calls() {
				if strings.HasSuffix(c, "-- "+h.prov.target.ReadyCheck) {
					alone++
				}
			}
			if want := map[bool]int{true: 1, false: 0}[tc.preflight]; alone != want {
				t.Errorf("%d ssh calls ran the ready check alone, want %d:\n%s", alone, want, strings.Join(h.lb.calls(), "\n"))
			}
			if !tc.preflight && (strings.TrimSpace(h.out.String()) != "ran" || out.State != "succeeded") {
				t.Errorf("stdout %q state %s", h.out, out.State)
			}
		})
	}
}

// The scan runs beside the fast attempt, and the verdict's deadline starts
// when the fingerprint goes: a scan slower than the deadline still gets
// the warm run's one round trip, skipped sync and command.
func TestRunFastAttemptWaitsForASlowScan(t *testing.T) {
	h := newWarmHarness(t)
	old := fastWait
	fastWait = 300 * time.Millisecond
	t.Cleanup(func() { fastWait = old })
	h.lb.gitDelay = 3 * fastWait
	from := len(h.lb.calls())
	h.notes.Reset()
	start := time.Now()
	out, err := Run(context.Background(), h.deps, h.syncSpec("cat", "a.txt"))
	took := time.Since(start)
	if err != nil || out.Exit != 0 {
		t.Fatalf("exit %d err %v\n%s", out.Exit, err, h.notes)
	}
	if took < h.lb.gitDelay {
		t.Fatalf("the run took %v: the scan was not held %v", took, h.lb.gitDelay) // the positive control
	}
	lines, _ := h.sessions(from)
	if len(lines) != 1 || h.out.String() != "alpha\n" || !strings.Contains(h.notes.String(), "No changes detected, skipping sync") {
		t.Errorf("%d round trips, stdout %q, notes:\n%s", len(lines), h.out, h.notes)
	}
}

// A plan that cannot be skipped (here: skipping disabled) still makes one
// fast attempt: the machine answers "sync needed" to the empty fingerprint,
// the owner record already written, and the run syncs and runs as usual.
func TestRunFastAttemptWithoutFingerprintSyncs(t *testing.T) {
	h := newWarmHarness(t)
	h.writeRepo(t, "a.txt", "beta\n")
	spec := h.syncSpec("cat", "a.txt")
	spec.Sync.Fingerprint = false
	from := len(h.lb.calls())
	out, err := Run(context.Background(), h.deps, spec)
	if err != nil || out.Exit != 0 || h.out.String() != "beta\n" {
		t.Fatalf("exit %d err %v stdout %q\n%s", out.Exit, err, h.out, h.notes)
	}
	lines, _ := h.sessions(from)
	if len(lines) == 0 || !strings.Contains(lines[0], "crabbox-fast") {
		t.Fatalf("the first round trip is not the fast attempt:\n%s", strings.Join(lines, "\n"))
	}
	for _, l := range lines[1:] {
		if strings.Contains(l, "crabbox-owner") {
			t.Errorf("the owner check ran again after the fast attempt:\n%s", l)
		}
	}
	rsync := 0
	for _, c := range h.lb.calls()[from:] {
		if strings.HasPrefix(c, "rsync ") {
			rsync++
		}
	}
	if rsync != 1 {
		t.Errorf("%d rsync calls, want 1", rsync)
	}
}

// The warm path starts the login shell before the verdict: what its
// profile prints on stderr still reaches the user, as on the ordinary
// path, and so does the reaper's note that it stopped a command a killed
// run left running.
func TestRunFastShowsShellAndReaperLines(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	if err := os.WriteFile(filepath.Join(home, ".bash_profile"), []byte("echo profile-says-hi >&2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newWarmHarness(t)
	out, err := Run(context.Background(), h.deps, h.syncSpec("true"))
	if err != nil {
		t.Fatalf("run: %v\n%s", err, h.notes)
	}
	rec, err := h.store.Get(out.RunID)
	if err != nil || rec.Workdir == "" {
		t.Fatalf("record: %+v %v", rec, err)
	}
	// A command a killed run left running: its own process group, with
	// that run's ID in its environment, and its pid file in the workdir.
	const left = "run_0000deadbeef"
	sleeper := exec.Command("sleep", "60")
	machine, err := h.deps.Owner.MachineID()
	if err != nil {
		t.Fatal(err)
	}
	sleeper.Env = append(os.Environ(), "CRABBOX_RUN_ID="+left, "CRABBOX_MACHINE_ID="+machine)
	sleeper.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	gone := make(chan struct{})
	go func() { sleeper.Wait(); close(gone) }()
	t.Cleanup(func() { sleeper.Process.Kill() })
	pidFile := filepath.Join(rec.Workdir, ".crabbox", "runs", left+".pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(sleeper.Process.Pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gone:
		t.Fatal("the leftover command ended before the run (no positive control)")
	default:
	}

	from := len(h.lb.calls())
	h.notes.Reset()
	h.out.Reset()
	h.errOut.Reset()
	if _, err := Run(context.Background(), h.deps, h.syncSpec("sh", "-c", "echo out; echo err >&2")); err != nil {
		t.Fatalf("run: %v\n%s", err, h.notes)
	}
	if lines, _ := h.sessions(from); len(lines) != 1 {
		t.Fatalf("%d round trips, want 1 (the warm path)", len(lines))
	}
	if h.out.String() != "out\n" {
		t.Errorf("stdout %q", h.out)
	}
	if e := h.errOut.String(); !strings.Contains(e, "profile-says-hi\n") || !strings.HasSuffix(e, "err\n") || strings.Contains(e, "crabbox-") {
		t.Errorf("stderr %q: want the profile's line and the command's, no protocol lines", e)
	}
	if !strings.Contains(h.notes.String(), "stopped the command left running by run "+left) {
		t.Errorf("notes do not say the leftover command was stopped:\n%s", h.notes)
	}
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Error("the leftover command is still running")
	}
}
