//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/testsshd"
)

// backend is one provider as the provider-neutral cases see it: how to
// make a world that uses it, warm a lease, find the lease's remote
// workdir, and check that a one-shot lease was released its way.
type backend struct {
	name string
	// world returns a world whose config selects the provider.
	world func(t *testing.T) *world
	// warm warms a kept lease with slug and returns its lease ID.
	warm func(w *world, slug string) string
	// remoteDir is the lease's remote workdir (a local path: lab
	// workspaces and the private sshd both run on this machine).
	remoteDir func(w *world, leaseID string) string
	// released fails t unless the lease of a one-shot run was released.
	released func(t *testing.T, w *world, r result)
}

var leaseLineRe = regexp.MustCompile(`(?m)^leased (cbx_[0-9a-f]{12}) slug=(\S+) provider=(\S+) `)

var backends = []backend{
	{
		name:  "coder",
		world: newWorld,
		warm: func(w *world, slug string) string {
			return w.warmup("--slug", slug).id
		},
		remoteDir: func(w *world, id string) string { return w.remoteDir(id) },
		released: func(t *testing.T, w *world, r result) {
			id := runLease(t, r)
			ws := regexp.MustCompile(`workspace=(\S+) ssh=`).FindStringSubmatch(r.stderr)
			if ws == nil {
				t.Fatalf("no workspace in the run line:\n%s", r.stderr)
			}
			name := ws[1][strings.LastIndex(ws[1], "/")+1:]
			t.Cleanup(func() { w.deleteWorkspace(name) })
			w.assertReleased(id, name)
		},
	},
	{
		name:  "ssh",
		world: func(t *testing.T) *world { w, _ := newSSHWorld(t); return w },
		warm: func(w *world, slug string) string {
			r := w.must("warmup", "--slug", slug)
			m := leaseLineRe.FindStringSubmatch(r.stdout)
			if m == nil || m[3] != "ssh" {
				w.t.Fatalf("warmup output lacks the leased line of provider ssh:\n%s", r.stdout)
			}
			return m[1]
		},
		remoteDir: func(w *world, id string) string {
			return filepath.Join(w.home, "remote-ssh", id, "demo-repo")
		},
		released: func(t *testing.T, w *world, r result) {
			id := runLease(t, r)
			if !strings.Contains(r.stderr, "lease cleanup stopped=true") || !strings.Contains(r.stderr, "provider=ssh") {
				t.Errorf("one-shot run did not release its host:\n%s", r.stderr)
			}
			if w.hasClaim(id) {
				t.Errorf("claim of lease %s left after the one-shot run", id)
			}
			if _, err := os.Stat(filepath.Join(w.home, "remote-ssh", ".crabbox-owner.json")); err == nil {
				t.Error("owner record left on the host after the release")
			}
		},
	},
}

var runLeaseRe = regexp.MustCompile(`run run_[0-9a-f]{12} lease=(cbx_[0-9a-f]{12}) `)

func runLease(t *testing.T, r result) string {
	t.Helper()
	m := runLeaseRe.FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("no run line in stderr:\n%s", r.stderr)
	}
	return m[1]
}

// newSSHWorld is a world whose provider is ssh, with one host: a private
// sshd on 127.0.0.1 that logs in as this user with a test key. The host
// work root is under the world's home.
func newSSHWorld(t *testing.T) (*world, *testsshd.Server) {
	t.Helper()
	srv := testsshd.Start(t)
	w := newWorld(t)
	w.write("crabbox.yaml", "provider: ssh\n")
	cfg := "ssh:\n" +
		"  identityFile: " + srv.Key + "\n" +
		"  workRoot: " + filepath.Join(w.home, "remote-ssh") + "\n" +
		"  hosts:\n" +
		"    - name: box1\n" +
		"      host: 127.0.0.1\n" +
		"      user: " + srv.User + "\n" +
		"      port: " + strconv.Itoa(srv.Port) + "\n"
	userCfg := filepath.Join(w.home, ".config", "crabbox", "config.yaml")
	if err := os.WriteFile(userCfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return w, srv
}

// The same sync, run, exit-code, history, interrupt and release cases
// for every provider.
func TestProviderNeutral(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			w := b.world(t)
			id := b.warm(w, "e2e-neutral-"+b.name)
			remote := func() string { return b.remoteDir(w, id) }

			// Sync: a new file arrives, a deleted one goes.
			w.write("data.txt", "payload "+b.name+"\n")
			r := w.crabbox("run", "--id", id, "--", "cat", "data.txt")
			wantCode(t, r, 0, "run cat")
			if strings.TrimSpace(r.stdout) != "payload "+b.name {
				t.Errorf("stdout %q", r.stdout)
			}
			if got, err := os.ReadFile(filepath.Join(remote(), "data.txt")); err != nil || string(got) != "payload "+b.name+"\n" {
				t.Errorf("remote data.txt = %q, %v", got, err)
			}
			os.Remove(filepath.Join(w.repo, "data.txt"))
			wantCode(t, w.crabbox("run", "--id", id, "--", "test", "!", "-e", "data.txt"), 0, "deleted file gone remotely")

			// Exit codes pass through, streams stay apart.
			r = w.crabbox("run", "--id", id, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
			wantCode(t, r, 3, "exit 3")
			if !strings.Contains(r.stdout, "out") || strings.Contains(r.stdout, "err") || !strings.Contains(r.stderr, "err") {
				t.Errorf("streams mixed:\nstdout=%q\nstderr=%q", r.stdout, r.stderr)
			}
			failedRun := runID(t, r)

			// History has the runs with their outcomes.
			recs := w.history("--lease", id)
			if len(recs) < 3 {
				t.Fatalf("history has %d runs of lease %s, want 3", len(recs), id)
			}
			found := false
			for _, h := range recs {
				if h.ID == failedRun {
					found = h.State == "failed" && h.ExitCode != nil && *h.ExitCode == 3
				}
			}
			if !found {
				t.Errorf("history lacks the failed run %s with exit 3: %+v", failedRun, recs)
			}

			// Interrupt: exit 130, recorded interrupted, the remote command gone.
			marker := filepath.Join(t.TempDir(), "started")
			p := w.start("", nil, "run", "--id", id, "--", "sh", "-c", "echo $$ > "+marker+"; exec sleep 120")
			waitUntil(t, 2*time.Minute, "the remote command to start", p, func() bool {
				b, _ := os.ReadFile(marker)
				return len(strings.TrimSpace(string(b))) > 0
			})
			pid, _ := os.ReadFile(marker)
			p.cmd.Process.Signal(syscall.SIGINT)
			ir := p.wait(time.Minute)
			wantCode(t, ir, 130, "interrupted run")
			if _, err := os.Stat("/proc/" + strings.TrimSpace(string(pid))); err == nil {
				t.Errorf("remote command %s survived the interrupt", strings.TrimSpace(string(pid)))
			}
			if recs := w.history("--lease", id); recs[0].State != "interrupted" {
				t.Errorf("newest run state %q, want interrupted", recs[0].State)
			}

			// The kept lease is still there; stop releases it (first: the
			// ssh world has one host).
			w.must("stop", id)
			if w.hasClaim(id) {
				t.Errorf("claim of %s left after stop", id)
			}

			// Release: a one-shot run leases, runs and releases.
			one := w.crabbox("run", "--", "true")
			wantCode(t, one, 0, "one-shot run")
			b.released(t, w, one)
		})
	}
}

// The ssh provider end to end: warmup on the only host, a Go test run,
// history, stop (the host keeps running), the host held by a second
// machine (exit 5), and a replaced host key (exit 7 with the fingerprint).
func TestSSHProvider(t *testing.T) {
	t.Parallel()
	srv := testsshd.Start(t)
	w := newWorld(t)
	w.write("crabbox.yaml", "provider: ssh\n")
	w.write("go.mod", "module example.com/demo\n\ngo 1.21\n")
	w.write("demo_test.go", "package demo\n\nimport \"testing\"\n\nfunc TestDemo(t *testing.T) { t.Log(\"ran remotely\") }\n")
	hostFlags := []string{"--provider", "ssh", "--ssh-host", srv.User + "@127.0.0.1:" + strconv.Itoa(srv.Port),
		"--ssh-identity", srv.Key, "--ssh-work-root", filepath.Join(w.home, "remote-ssh")}
	withHost := func(sub string, rest ...string) []string {
		return append(append([]string{sub}, hostFlags...), rest...)
	}

	r := w.must(withHost("warmup", "--slug", "b1")...)
	m := leaseLineRe.FindStringSubmatch(r.stdout)
	if m == nil || m[2] != "b1" || m[3] != "ssh" {
		t.Fatalf("warmup output:\n%s", r.stdout)
	}
	id := m[1]
	// The host's login shell gets crabbox's PATH (for go) and a Go cache
	// under the test's home.
	goEnv := []string{"PATH=/usr/local/go/bin:" + lab.PATH, "GOCACHE=" + filepath.Join(w.home, "gocache"), "GOTOOLCHAIN=local"}
	r = w.crabboxEnv(goEnv, withHost("run", "--id", "b1", "--allow-env", "PATH,GOCACHE,GOTOOLCHAIN", "--", "go", "test", "-count=1", "-v", "./...")...)
	wantCode(t, r, 0, "run go test over ssh")
	if !strings.Contains(r.stdout, "ran remotely") || !strings.Contains(r.stdout, "ok  \texample.com/demo") {
		t.Errorf("go test output:\n%s", r.stdout)
	}
	if recs := w.history("--lease", id); len(recs) != 1 || recs[0].State != "succeeded" {
		t.Errorf("history %+v", recs)
	}

	// A second machine (another state dir) finds the only host held.
	other := newWorld(t)
	other.write("crabbox.yaml", "provider: ssh\n")
	r2 := other.crabbox(withHost("warmup", "--slug", "b2")...)
	wantCode(t, r2, 5, "warmup with the only host held by another machine")
	if !strings.Contains(r2.stderr, "127.0.0.1") {
		t.Errorf("all-busy message does not name the host:\n%s", r2.stderr)
	}

	w.must(withHost("stop", "b1")...)
	if !srv.Running() {
		t.Fatal("stop took the sshd down")
	}
	if w.hasClaim(id) {
		t.Error("claim left after stop")
	}
	// Positive control for the host-key check: the host answers again.
	wantCode(t, w.crabbox(withHost("run", "--", "true")...), 0, "one-shot run before the key change")

	// A replaced host key is refused with its fingerprint.
	srv.Restart(t, true)
	fp := srv.Fingerprint(t)
	r3 := w.crabbox(withHost("run", "--", "true")...)
	wantCode(t, r3, 7, "run after the host key changed")
	if !strings.Contains(r3.stderr, fp) || !strings.Contains(r3.stderr, "known_hosts") {
		t.Errorf("host-key refusal lacks the fingerprint %s or the file:\n%s", fp, r3.stderr)
	}
	if !srv.Running() {
		t.Error("sshd not running at the end")
	}
}
