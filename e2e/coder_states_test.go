//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// buildInfo is Coder's own record of a workspace's latest build.
type buildInfo struct {
	Number     int
	Status     string
	Transition string
}

func (w *world) latestBuild(name string) buildInfo {
	w.t.Helper()
	out, err := runCmd(cmdTimeout, w.repo, w.env, lab.Coder, "list", "-o", "json")
	if err != nil {
		w.t.Fatalf("coder list: %v\n%s", err, out)
	}
	var rows []struct {
		Name        string `json:"name"`
		LatestBuild struct {
			BuildNumber int    `json:"build_number"`
			Status      string `json:"status"`
			Transition  string `json:"transition"`
		} `json:"latest_build"`
	}
	if err := json.Unmarshal(out, &rows); err != nil {
		w.t.Fatalf("coder list JSON: %v\n%s", err, out)
	}
	for _, r := range rows {
		if r.Name == name {
			return buildInfo{r.LatestBuild.BuildNumber, r.LatestBuild.Status, r.LatestBuild.Transition}
		}
	}
	w.t.Fatalf("workspace %s not in coder list", name)
	return buildInfo{}
}

// coderBehindBack runs the lab's real coder CLI (not crabbox's wrapper), as
// a user or Coder's autostop would.
func (w *world) coderBehindBack(args ...string) {
	w.t.Helper()
	if out, err := runCmd(cmdTimeout, w.repo, w.env, lab.Coder, args...); err != nil {
		w.t.Fatalf("coder %v: %v\n%s", args, err, out)
	}
}

// coderBackground starts the lab's coder CLI without waiting; the returned
// func waits for it (bounded).
func (w *world) coderBackground(args ...string) func() {
	w.t.Helper()
	cmd := exec.Command(lab.Coder, args...)
	cmd.Dir, cmd.Env = w.repo, w.env
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return func() {
		select {
		case err := <-done:
			if err != nil {
				w.t.Logf("background coder %v: %v\n%s", args, err, out.String())
			}
		case <-time.After(cmdTimeout):
			cmd.Process.Kill()
			w.t.Errorf("background coder %v still running after %s", args, cmdTimeout)
		}
	}
}

// waitBuild polls Coder until the workspace's latest build matches.
func (w *world) waitBuild(name string, timeout time.Duration, ok func(buildInfo) bool) buildInfo {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b := w.latestBuild(name)
		if ok(b) {
			return b
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("workspace %s: build %+v after %s", name, b, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Defect 3: a workspace stopped (or being stopped, or being started)
// outside crabbox, while its claim still says ready. `run --id` must
// succeed every time, issue at most one `coder start` (none when a start
// is already under way), and Coder must record exactly one start build per
// round: crabbox's ssh never starts a workspace behind crabbox's back.
func TestCoderRunIDAfterStopBehindBack(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	f := newFaults(t)
	l := w.warmup("--coder-cli", f.wrapper, "--slug", "e2e-behind")
	ref := "admin/" + l.workspace

	type round struct {
		kind   string // stopped | stopping | starting
		starts int    // starts crabbox may issue
	}
	var rounds []round
	for i := 0; i < 10; i++ {
		rounds = append(rounds, round{"stopped", 1})
	}
	rounds = append(rounds, round{"stopping", 1}, round{"stopping", 1}, round{"starting", 0}, round{"starting", 0})
	settled := func(b buildInfo) bool { return b.Status == "running" || b.Status == "stopped" }
	// A failed round may leave a build running: let it finish before the
	// next round (and before the workspace is deleted).
	t.Cleanup(func() { w.waitBuild(l.workspace, 2*time.Minute, settled) })
	ok := 0
	for i, rd := range rounds {
		before := w.waitBuild(l.workspace, 2*time.Minute, settled)
		if before.Status != "running" {
			w.coderBehindBack("start", "--yes", ref)
			before = w.latestBuild(l.workspace)
		}
		var wait func()
		switch rd.kind {
		case "stopped":
			w.coderBehindBack("stop", "--yes", ref)
		case "stopping":
			wait = w.coderBackground("stop", "--yes", ref)
			w.waitBuild(l.workspace, time.Minute, func(b buildInfo) bool { return b.Number > before.Number })
		case "starting":
			w.coderBehindBack("stop", "--yes", ref)
			wait = w.coderBackground("start", "--yes", ref)
			w.waitBuild(l.workspace, time.Minute, func(b buildInfo) bool { return b.Number > before.Number+1 })
		}
		mid := w.latestBuild(l.workspace)
		startsBefore := f.count("start", "")
		r := w.crabbox("run", "--coder-cli", f.wrapper, "--id", l.id, "--", "echo", "hi")
		if wait != nil {
			wait()
		}
		starts := f.count("start", "") - startsBefore
		after := w.latestBuild(l.workspace)
		good := true
		if r.code != 0 || !regexp.MustCompile(`(?m)^hi$`).MatchString(r.stdout) {
			t.Errorf("round %d (%s, build %+v when run began): exit %d stdout %q\nstderr:\n%s", i+1, rd.kind, mid, r.code, r.stdout, r.stderr)
			good = false
		}
		if starts > rd.starts {
			t.Errorf("round %d (%s): crabbox issued %d coder start calls, want at most %d", i+1, rd.kind, starts, rd.starts)
			good = false
		}
		// One stop and exactly one start build since the round began.
		// Except: with a live persistent tunnel (ssh.persist) a run while a
		// stop build is still running may use the tunnel (the agent still
		// answers) and run the command before the stop completes; then the
		// run succeeded, started nothing, and the stop is the only build.
		fastStopping := rd.kind == "stopping" && r.code == 0 && starts == 0 &&
			after.Number == before.Number+1 && after.Transition == "stop"
		if fastStopping {
			t.Logf("round %d (stopping): the run used the live tunnel before the stop finished", i+1)
		} else if after.Number != before.Number+2 || after.Transition != "start" || after.Status != "running" {
			t.Errorf("round %d (%s): builds %+v -> %+v, want one stop and one start build", i+1, rd.kind, before, after)
			good = false
		}
		if good {
			ok++
		}
	}
	t.Logf("%d/%d rounds succeeded", ok, len(rounds))
	// The per-workspace known_hosts file is the one warmup recorded.
	kh, _ := filepath.Glob(filepath.Join(w.home, ".config", "crabbox", "coder", "known_hosts.d", "*"))
	if len(kh) != 1 {
		t.Errorf("known_hosts files = %v, want exactly one", kh)
	}
	w.must("stop", l.id)
	w.assertReleased(l.id, l.workspace)
}

// envWith is env with the given variables replaced (value "" with unset
// true removes them).
func envWith(env []string, set map[string]string, unset ...string) []string {
	var out []string
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		if _, ok := set[k]; ok {
			continue
		}
		drop := false
		for _, u := range unset {
			drop = drop || k == u
		}
		if !drop {
			out = append(out, e)
		}
	}
	for k, v := range set {
		out = append(out, k+"="+v)
	}
	return out
}

// Defect 11: doctor against the lab with nobody signed in. With CODER_URL
// set, the CLI reaches the server and reports "You are signed out or your
// session has expired"; that is a missing login (exit 1, auth=missing_login,
// mutation=false), like "You are not logged in" without CODER_URL. The
// bogus token never appears in the output. Positive control: the real login
// is ready.
func TestCoderDoctorSignedOut(t *testing.T) {
	t.Parallel()
	const bogus = "AbCdEf0123-zyxwvutsrqponmlkjihgfe"
	emptyDir := t.TempDir()
	bogusDir := t.TempDir()
	for name, content := range map[string]string{"url": lab.URL, "session": bogus} {
		if err := os.WriteFile(filepath.Join(bogusDir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name     string
		set      map[string]string
		unset    []string
		wantAuth string
		wantCode int
		needle   string // in the auth check message
	}{
		{"signed-out-url-empty-config", map[string]string{"CODER_CONFIG_DIR": emptyDir, "CODER_URL": lab.URL}, nil, "missing_login", 1, "signed out"},
		{"bogus-token", map[string]string{"CODER_CONFIG_DIR": bogusDir}, []string{"CODER_URL"}, "missing_login", 1, "session has expired"},
		{"bogus-token-with-url", map[string]string{"CODER_CONFIG_DIR": bogusDir, "CODER_URL": lab.URL}, nil, "missing_login", 1, "session has expired"},
		{"not-logged-in-no-url", map[string]string{"CODER_CONFIG_DIR": emptyDir}, []string{"CODER_URL"}, "missing_login", 1, "not logged in"},
		{"logged-in-control", nil, nil, "ready", 0, "coder login ready"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.env = envWith(w.env, tc.set, tc.unset...)
			r := w.crabbox("doctor")
			wantCode(t, r, tc.wantCode, "doctor")
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			summary := lines[len(lines)-1]
			if !strings.Contains(summary, "auth="+tc.wantAuth+" ") || !strings.Contains(summary, "mutation=false") || !strings.HasPrefix(summary, "provider=coder cli=ready ") {
				t.Errorf("summary = %q, want auth=%s mutation=false", summary, tc.wantAuth)
			}
			if tc.wantAuth == "missing_login" && !strings.Contains(r.stdout, "run `coder login <url>`") {
				t.Errorf("doctor does not name `coder login`:\n%s", r.stdout)
			}
			if !strings.Contains(strings.ToLower(r.stdout), tc.needle) {
				t.Errorf("doctor output lacks %q:\n%s", tc.needle, r.stdout)
			}
			j := w.crabbox("doctor", "--json")
			wantCode(t, j, tc.wantCode, "doctor --json")
			v := decodeJSON[struct {
				OK      bool
				Summary string
				Checks  []struct {
					Status, Check string
					Details       map[string]string
				}
			}](t, j.stdout)
			if v.OK != (tc.wantCode == 0) || !strings.Contains(v.Summary, "auth="+tc.wantAuth+" ") {
				t.Errorf("doctor --json ok=%t summary=%q", v.OK, v.Summary)
			}
			for _, c := range v.Checks {
				if c.Check == "auth" && tc.wantAuth == "missing_login" && (c.Status != "failed" || c.Details["classification"] != "missing_login" || c.Details["mutation"] != "false") {
					t.Errorf("auth check = %+v", c)
				}
			}
			for _, out := range []string{r.stdout, r.stderr, j.stdout, j.stderr} {
				if strings.Contains(out, bogus) || strings.Contains(out, "zyxwvutsrq") {
					t.Errorf("the session token leaked into doctor's output")
				}
			}
		})
	}
}

// Lines the Coder CLI prints while it builds a workspace (terraform plan /
// apply, build stages); crabbox must not pass them to a non-terminal
// stderr.
// (Case-sensitive: crabbox's own lines say "starting workspace …".)
var buildLineRe = regexp.MustCompile(`(?m)[Tt]erraform|^==>|^===|Planning infrastructure|Starting workspace|Stopping workspace|has been created|has been stopped|coder_agent|Queued|Running \[`)

var logPathRe = regexp.MustCompile(`(/\S+/coder/logs/\S+\.log)`)

// Quiet provisioning: with stderr captured (not a terminal), warmup and
// stop print crabbox's own timestamped progress lines and none of Coder's
// build output, which is kept in 0600 files under <state>/coder/logs. A
// failing create names its log file, and that file holds the CLI's
// output.
func TestCoderQuietProvisioning(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	f := newFaults(t)
	logDir := filepath.Join(w.home, ".local", "state", "crabbox", "coder", "logs")

	r := w.crabbox("warmup", "--slug", "e2e-quiet")
	id, ws := provisioned(t, w, r.stderr)
	wantCode(t, r, 0, "warmup")
	if m := buildLineRe.FindAllString(r.stderr, -1); m != nil {
		t.Errorf("warmup stderr carries Coder build output %q:\n%s", m, r.stderr)
	}
	for _, re := range []string{
		`(?m)^\d\d:\d\d:\d\d creating workspace ` + regexp.QuoteMeta(ws),
		`(?m)^\d\d:\d\d:\d\d creating workspace ` + regexp.QuoteMeta(ws) + ` done in \S+$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stderr) {
			t.Errorf("warmup stderr lacks a line matching %s:\n%s", re, r.stderr)
		}
	}
	if n := strings.Count(r.stderr, "\n"); n > 12 {
		t.Errorf("warmup printed %d stderr lines:\n%s", n, r.stderr)
	}

	r = w.crabbox("stop", id)
	wantCode(t, r, 0, "stop")
	if m := buildLineRe.FindAllString(r.stderr, -1); m != nil {
		t.Errorf("stop stderr carries Coder build output %q:\n%s", m, r.stderr)
	}
	if !regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d stopping workspace ` + regexp.QuoteMeta(ws) + ` done in \S+$`).MatchString(r.stderr) {
		t.Errorf("stop stderr lacks the stopping progress line:\n%s", r.stderr)
	}
	w.assertReleased(id, ws)

	// The build output went to private files.
	if fi, err := os.Stat(logDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("log dir %s: %v %v", logDir, fi, err)
	}
	logs, _ := filepath.Glob(filepath.Join(logDir, "*.log"))
	var create, stop string
	for _, p := range logs {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("log %s: mode %v err %v, want 0600", p, fi.Mode(), err)
		}
		if strings.Contains(filepath.Base(p), "-create-") {
			create = p
		}
		if strings.Contains(filepath.Base(p), "-stop-") {
			stop = p
		}
	}
	if create == "" || stop == "" {
		t.Fatalf("logs = %v, want a create and a stop log", logs)
	}
	for _, p := range []string{create, stop} {
		if b, _ := os.ReadFile(p); !buildLineRe.Match(b) {
			t.Errorf("log %s does not hold the build output:\n%s", p, b)
		}
	}

	// A failing create: the error names the log, which holds the output.
	f.set("create 1 after-fail")
	r = w.crabbox(f.args("warmup", "--keep=false", "--slug", "e2e-quiet-fail")...)
	id2, ws2 := provisioned(t, w, r.stderr)
	wantCode(t, r, 1, "warmup with create failing")
	wantStderr(t, r, "coder create workspace "+ws2+" failed")
	m := logPathRe.FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("the create failure names no log file:\n%s", r.stderr)
	}
	b, err := os.ReadFile(strings.TrimRight(m[1], ".,;:)"))
	if err != nil {
		t.Fatalf("log named in the error: %v", err)
	}
	if !strings.Contains(string(b), "fault injected after coder create") || !buildLineRe.Match(b) {
		t.Errorf("log %s lacks the CLI's output:\n%s", m[1], b)
	}
	if got := buildLineRe.FindAllString(r.stderr, -1); len(got) > 6 { // the error keeps the last lines
		t.Errorf("failed warmup dumped the build output on stderr %q:\n%s", got, r.stderr)
	}
	w.assertReleased(id2, ws2)
}

// Read-only and release commands find the provider from the claim: in a
// repo whose crabbox.yaml names no provider, status, inspect, list and stop
// work on a lease warmed up with --provider coder. Without a claim they
// still ask for a provider (exit 2).
func TestCoderProviderFromClaim(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.write("crabbox.yaml", "coder:\n  template: "+lab.Template+"\n")

	noProvider := func(args ...string) {
		t.Helper()
		r := w.crabbox(args...)
		wantCode(t, r, 2, strings.Join(args, " ")+" without a claim or provider")
		wantStderr(t, r, "no provider selected")
	}
	noProvider("status", "e2e-noprov")
	noProvider("list")

	l := w.warmup("--provider", "coder", "--slug", "e2e-noprov")
	for _, ident := range []string{l.id, l.slug, l.workspace, l.ref} {
		st := decodeJSON[jsonLease](t, w.must("status", ident, "--json").stdout)
		if st.ID != l.id || st.Provider != "coder" {
			t.Errorf("status %s = %+v", ident, st)
		}
	}
	w.must("inspect", l.slug)
	if r := w.must("list"); !strings.Contains(r.stdout, l.workspace) {
		t.Errorf("list lacks %s:\n%s", l.workspace, r.stdout)
	}
	if r := w.must("run", "--id", l.slug, "--", "echo", "from-claim"); !strings.Contains(r.stdout, "from-claim") {
		t.Errorf("run --id without a provider: %q", r.stdout)
	}
	// An identifier no claim matches still needs a provider.
	noProvider("status", "no-such-lease")
	noProvider("run", "--id", "no-such-lease", "--", "true")
	r := w.must("stop", l.slug)
	wantStderr(t, r, "stopped coder workspace lease="+l.id)
	w.assertReleased(l.id, l.workspace)
	// The released record still names the provider: status finds the
	// stopped workspace under its real lease ID.
	if r := w.must("status", l.id); !strings.Contains(r.stdout, l.id+" ") || !strings.Contains(r.stdout, "state=stopped") {
		t.Errorf("status of the released lease: %q", r.stdout)
	}
}

// A read-only state dir (a read-only bind mount: root ignores file modes):
// stop stops the workspace, cannot remove the claim, and says exactly
// that: workspace stopped, the claim file and the error, and the next step,
// which works once the dir is writable again.
func TestCoderStopReadOnlyStateDir(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	l := w.warmup("--slug", "e2e-rostate")
	state := filepath.Join(w.home, ".local", "state", "crabbox")
	if out, err := runCmd(cmdTimeout, "", nil, "mount", "--bind", state, state); err != nil {
		t.Skipf("a read-only bind mount needs mount privileges (root): %v\n%s", err, out)
	}
	mounted := true
	umount := func() {
		if mounted {
			if out, err := runCmd(cmdTimeout, "", nil, "umount", state); err != nil {
				t.Errorf("umount %s: %v\n%s", state, err, out)
			}
			mounted = false
		}
	}
	t.Cleanup(umount)
	if out, err := runCmd(cmdTimeout, "", nil, "mount", "-o", "remount,bind,ro", state); err != nil {
		t.Fatalf("remount ro: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(state, "probe"), nil, 0o600); err == nil {
		t.Fatalf("state dir %s is still writable", state)
	}

	r := w.crabbox("stop", l.id)
	wantCode(t, r, 1, "stop with a read-only state dir")
	claim := w.claimPath(l.id)
	wantStderr(t, r, "stopped coder workspace "+l.workspace+" (lease "+l.id+"), but its local claim could not be removed",
		"read-only file system", claim, "run `crabbox stop "+l.id+"`")
	if strings.Contains(r.stderr, "was not released") {
		t.Errorf("stop says the lease was not released although the workspace was stopped:\n%s", r.stderr)
	}
	if row := w.coderRow(l.workspace); row == nil || row.Status != "stopped" {
		t.Errorf("workspace after stop = %+v, want stopped", row)
	}
	if _, err := os.Stat(claim); err != nil {
		t.Errorf("claim file: %v", err)
	}

	// The named next step works once the dir is writable.
	umount()
	r = w.must("stop", l.id)
	wantStderr(t, r, "workspace already stopped; claim removed")
	w.assertReleased(l.id, l.workspace)
}
