//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Run records on the lab: liveness after a host name change (defect 9),
// the outcome of a run whose output fills the disk (defect 10), and one
// duration for history and the run summary (total=).

// recJSON is a run record as `history --json` prints it.
type recJSON struct {
	ID            string `json:"id"`
	State         string `json:"state"`
	ExitCode      *int   `json:"exitCode"`
	DurationMs    *int64 `json:"durationMs"`
	Host          string `json:"host"`
	BootID        string `json:"bootId"`
	LogBytes      int64  `json:"logBytes"`
	LogIncomplete bool   `json:"logIncomplete"`
	LogError      string `json:"logError"`
	LogStoppedAt  int64  `json:"logStoppedAt"`
	Phases        []struct {
		Name    string `json:"name"`
		Ms      int64  `json:"ms"`
		Skipped bool   `json:"skipped"`
		Error   string `json:"error"`
	} `json:"phases"`
}

// record is one run's record from `history --json` (extra env added).
func (w *world) record(extra []string, id string) recJSON {
	w.t.Helper()
	r := w.crabboxEnv(extra, "history", "--json", "--limit", "0")
	if r.code != 0 {
		w.t.Fatalf("history --json: exit %d\n%s", r.code, r.stderr)
	}
	for _, rec := range decodeJSON[[]recJSON](w.t, r.stdout) {
		if rec.ID == id {
			return rec
		}
	}
	w.t.Fatalf("run %s not in history:\n%s", id, r.stdout)
	return recJSON{}
}

func TestRecordsOnWarmLease(t *testing.T) {
	w := newWorld(t)
	l := w.warmup("--slug", "e2e-records")

	// Defect 9: crabbox runs under another host name (its own UTS
	// namespace, as in a container or after a laptop changed networks) and
	// is killed mid-command; read back under this host's name, the run is
	// interrupted, not running forever.
	t.Run("hostname-change", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Fatal("needs root for a UTS namespace (the lab runs as root)")
		}
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Fatal("no unshare(1):", err)
		}
		host, _ := os.Hostname()
		other := "crabbox-e2e-renamed"
		if host == other {
			other += "-2"
		}
		p := w.startUnder([]string{unshare, "-u", "sh", "-c", `hostname "$0" && exec "$@"`, other, lab.Crabbox},
			"run", "--id", l.id, "--", "sh", "-c", "echo records-started; sleep 60")
		waitUntil(t, 2*time.Minute, "the remote command to start", p, func() bool { return strings.Contains(p.out.String(), "records-started") })
		m := runIDRe.FindStringSubmatch(p.errb.String())
		if m == nil {
			t.Fatalf("no run ID in stderr:\n%s", p.errb.String())
		}
		id := m[1]
		// Positive control: the run was recorded under the other name and
		// is running while its crabbox lives.
		if rec := w.record(nil, id); rec.State != "running" || rec.Host != other {
			t.Fatalf("live run: state %s host %q, want running on %q", rec.State, rec.Host, other)
		}
		r := p.kill()
		wantCode(t, r, 137, "killed run")
		rec := w.record(nil, id)
		if rec.State != "interrupted" || rec.ExitCode != nil {
			t.Errorf("killed run recorded under host %q, read on %q: state %s exit %v, want interrupted", rec.Host, host, rec.State, rec.ExitCode)
		}
		if r := w.crabbox("logs", id); r.code != 0 || !strings.Contains(r.stdout, "records-started") || strings.Contains(r.stderr, "still running") {
			t.Errorf("logs of the killed run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})

	// Defect 10: the state dir is a 2 MiB tmpfs and the command prints
	// 4 MiB: the log fills it. The run still exits 0 and is recorded
	// succeeded, exit 0; logs says where and why its log stops.
	t.Run("full-disk", func(t *testing.T) {
		state := tinyStateDir(t, w, "2m")
		extra := []string{"XDG_STATE_HOME=" + state}
		const raw = 3 << 20 // base64: 4 MiB plus a newline every 76 characters
		wantOut := raw/3*4 + (raw/3*4+75)/76
		r, outBytes, head := w.crabboxCount(extra, "run", "--id", l.id, "--", "sh", "-c", "head -c 3M /dev/zero | base64")
		// Positive control: the command ran and its whole output reached
		// the terminal.
		if outBytes != int64(wantOut) || !strings.HasPrefix(head, "AAAA") {
			t.Errorf("stdout: %d bytes starting %q, want %d bytes of base64", outBytes, head, wantOut)
		}
		if r.code != 0 {
			t.Errorf("run on a full state dir: exit %d, want 0\n%s", r.code, r.stderr)
		}
		id := runID(t, r)
		if df, err := exec.Command("df", "-k", state).CombinedOutput(); err == nil {
			t.Logf("state dir after the run:\n%s", df)
		}
		rec := w.record(extra, id)
		if rec.State != "succeeded" || rec.ExitCode == nil || *rec.ExitCode != 0 {
			t.Errorf("recorded %s exit %v, want succeeded exit 0", rec.State, rec.ExitCode)
		}
		if !rec.LogIncomplete || !strings.Contains(rec.LogError, "no space left on device") || rec.LogStoppedAt <= 0 || rec.LogStoppedAt >= 2<<20 || rec.LogBytes < int64(wantOut) {
			t.Errorf("record: logIncomplete=%v logError=%q logStoppedAt=%d logBytes=%d, want incomplete with ENOSPC after under 2 MiB of %d+ bytes",
				rec.LogIncomplete, rec.LogError, rec.LogStoppedAt, rec.LogBytes, wantOut)
		}
		if !strings.Contains(r.stderr, "log incomplete") {
			t.Errorf("the run did not warn that its log is incomplete:\n%s", r.stderr)
		}
		lr, logBytes, logHead := w.crabboxCount(extra, "logs", id)
		note := regexp.MustCompile(`note: log incomplete: .*no space left on device after (\d+) bytes`)
		if lr.code != 0 || !strings.HasPrefix(logHead, "AAAA") || !note.MatchString(lr.stderr) {
			t.Errorf("logs: exit %d, %d bytes starting %q, stderr %q; want the start of the output and a note", lr.code, logBytes, logHead, lr.stderr)
		} else if m := note.FindStringSubmatch(lr.stderr); m[1] != itoa(int(logBytes)) || logBytes != rec.LogStoppedAt {
			t.Errorf("logs prints %d bytes, the note says %s, the record %d", logBytes, m[1], rec.LogStoppedAt)
		}
	})
}

// A one-shot run (fresh lease, released after the run): the record covers
// the release, so history's duration is the run summary's total=.
func TestRecordsOneShotDuration(t *testing.T) {
	w := newWorld(t)
	r := w.crabbox("run", "--slug", "e2e-oneshot", "--", "sh", "-c", "echo one-shot; sleep 1")
	if pm := workspaceRe.FindStringSubmatch(r.stderr); pm != nil {
		t.Cleanup(func() { w.deleteWorkspace(pm[2]) })
	}
	if r.code != 0 {
		t.Fatalf("one-shot run: exit %d\n%s", r.code, r.stderr)
	}
	id := runID(t, r)
	// Positive control: the fresh lease really was released.
	if !strings.Contains(r.stderr, "lease cleanup stopped=true") {
		t.Fatalf("no release:\n%s", r.stderr)
	}
	m := regexp.MustCompile(`(?m)^run summary run=` + id + ` .* total=(\S+) `).FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("no run summary:\n%s", r.stderr)
	}
	total, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatal(err)
	}
	rec := w.record(nil, id)
	if rec.DurationMs == nil || *rec.DurationMs != total.Milliseconds() {
		t.Errorf("history durationMs=%v, summary total=%s (%d ms): want one figure", deref(rec.DurationMs), m[1], total.Milliseconds())
	}
	var release int64 = -1
	for _, p := range rec.Phases {
		if p.Name == "release" && !p.Skipped && p.Error == "" {
			release = p.Ms
		}
	}
	if release <= 0 || rec.DurationMs != nil && release >= *rec.DurationMs {
		t.Errorf("release phase %d ms in a %v ms run: %+v", release, deref(rec.DurationMs), rec.Phases)
	}
	line := w.must("history", "--limit", "1").stdout
	if want := " duration=" + histDuration(time.Duration(deref(rec.DurationMs))*time.Millisecond) + " "; !strings.Contains(line, id) || !strings.Contains(line, want) {
		t.Errorf("history line %q lacks %q", line, want)
	}
}

// SIGKILL during the release of a one-shot run: the outcome was recorded
// before the release began, so the record is finished (succeeded, exit 0),
// without a release phase, never interrupted.
func TestRecordsKillDuringRelease(t *testing.T) {
	w := newWorld(t)
	f := newFaults(t)
	f.set("stop 1 delay 5s")
	p := w.start("", nil, f.args("run", "--slug", "e2e-killrelease", "--", "echo", "before-release")...)
	waitUntil(t, 3*time.Minute, "the release (coder stop) to start", p, func() bool { return f.marker("delay.stop.1") })
	r := p.kill()
	wantCode(t, r, 137, "killed during release")
	if pm := workspaceRe.FindStringSubmatch(r.stderr); pm != nil {
		t.Cleanup(func() {
			// Let the orphaned stop's build end before deleting (bounded).
			for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); time.Sleep(time.Second) {
				if row := w.coderRow(pm[2]); row == nil || row.Status == "stopped" || row.Status == "failed" {
					break
				}
			}
			w.deleteWorkspace(pm[2])
		})
	}
	// Positive control: the command ran and crabbox was in the release.
	if !strings.Contains(r.stdout, "before-release") || strings.Contains(r.stderr, "run summary") {
		t.Fatalf("not killed during the release:\n%s%s", r.stdout, r.stderr)
	}
	id := runID(t, r)
	rec := w.record(nil, id)
	if rec.State != "succeeded" || rec.ExitCode == nil || *rec.ExitCode != 0 || rec.DurationMs == nil {
		t.Errorf("record after a kill during the release: state %s exit %v duration %v, want succeeded exit 0 with an end", rec.State, rec.ExitCode, deref(rec.DurationMs))
	}
	for _, ph := range rec.Phases {
		if ph.Name == "release" {
			t.Errorf("release phase recorded for a release that never ended: %+v", ph)
		}
	}
}

func deref(p *int64) int64 {
	if p == nil {
		return -1
	}
	return *p
}

// histDuration is history's rendering: ms under a second, else 0.1 s.
func histDuration(d time.Duration) string {
	if d < time.Second {
		return itoa(int(d.Milliseconds())) + "ms"
	}
	return d.Round(100 * time.Millisecond).String()
}

// tinyStateDir mounts a tmpfs of size on a new directory, copies w's
// crabbox state (claims, ...) into it and returns it for XDG_STATE_HOME;
// it is unmounted when the test ends.
func tinyStateDir(t *testing.T, w *world, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tiny-state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := runCmd(cmdTimeout, "/", nil, "mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir); err != nil {
		t.Fatalf("mount a tmpfs (needs root): %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := runCmd(cmdTimeout, "/", nil, "umount", dir); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	})
	src := filepath.Join(w.home, ".local", "state", "crabbox")
	if out, err := runCmd(cmdTimeout, "/", nil, "cp", "-a", src, dir+"/"); err != nil {
		t.Fatalf("copy the state dir: %v\n%s", err, out)
	}
	return dir
}

// crabboxCount runs crabbox like crabboxEnv but only counts stdout (the
// output is megabytes); it returns the byte count and the first 64 bytes.
func (w *world) crabboxCount(extra []string, args ...string) (result, int64, string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, lab.Crabbox, args...)
	cmd.Dir = w.repo
	cmd.Env = append(append([]string(nil), w.env...), extra...)
	cw := &countWriter{}
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = cw, &errb
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := result{stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		w.t.Fatalf("crabbox %v: %v", args, err)
	}
	if ctx.Err() != nil {
		w.t.Fatalf("crabbox %v timed out after %s\nstderr:\n%s", args, cmdTimeout, r.stderr)
	}
	w.t.Logf("$ crabbox %s -> exit %d, %d bytes on stdout starting %q\n%s", strings.Join(args, " "), r.code, cw.n, cw.head.String(), r.stderr)
	return r, cw.n, cw.head.String()
}

type countWriter struct {
	n    int64
	head bytes.Buffer
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	if room := 64 - c.head.Len(); room > 0 {
		c.head.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// startUnder starts crabbox through a wrapper argv (whose last word is
// the crabbox binary) in the scratch repo, like world.start. The wrapper
// must exec crabbox, so the process is crabbox itself.
func (w *world) startUnder(wrapper []string, args ...string) *proc {
	w.t.Helper()
	return w.startProg(wrapper, "", nil, args...)
}
