package runs

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// writeRawRecord writes run.json as raw JSON (the on-disk shape, keys as
// given), as an older or newer crabbox would have written it.
func writeRawRecord(t *testing.T, s *Store, id string, fields map[string]any) {
	t.Helper()
	rec := map[string]any{
		"id": id, "leaseId": "cbx_aaaaaaaaaaaa", "slug": "", "provider": "coder", "workspace": "",
		"repoRoot": "/repo", "workdir": "", "command": []string{"sleep", "1"}, "shell": false,
		"state": "running", "exitCode": nil, "startedAt": time.Now().UTC().Add(-time.Minute),
		"endedAt": nil, "durationMs": nil, "phases": []any{}, "syncSkipped": false, "results": nil,
		"logTruncated": false, "logBytes": 0,
	}
	for k, v := range fields {
		if v == nil {
			delete(rec, k)
		} else {
			rec[k] = v
		}
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	dir := s.RunDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, RecordName), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// deadPID is the PID of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("no true(1):", err)
	}
	return cmd.Process.Pid
}

// Liveness never depends on the host name (defect 9): the boot ID, the PID
// and the process's start time decide. Records are written as JSON, in the
// shape today's crabbox writes (bootId) and the shape older versions wrote
// (host only), so old records stay readable.
func TestLivenessIgnoresHostname(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("boot IDs and start times come from /proc")
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Skip("no boot ID:", err)
	}
	bootID := strings.TrimSpace(string(boot))
	selfPID := os.Getpid()
	selfStart, err := processStart(selfPID)
	if err != nil || selfStart == 0 {
		t.Fatalf("own start time: %d %v", selfStart, err)
	}
	host, _ := os.Hostname()
	dead := deadPID(t)
	otherBoot := "00000000-0000-4000-8000-000000000000"
	if bootID == otherBoot {
		t.Fatal("unexpected boot ID")
	}

	tests := []struct {
		name   string
		fields map[string]any
		want   string
	}{
		{"dead owner, other host, this boot", map[string]any{"pid": dead, "host": "old-name", "bootId": bootID}, StateInterrupted},
		{"dead owner, other host, old record without boot ID", map[string]any{"pid": dead, "pidStart": 12345, "host": "old-name"}, StateInterrupted},
		{"dead owner, other host, old record without start time", map[string]any{"pid": dead, "host": "old-name"}, StateInterrupted},
		{"live owner, other host, this boot", map[string]any{"pid": selfPID, "pidStart": selfStart, "host": "old-name", "bootId": bootID}, StateRunning},
		{"live owner, other host, old record", map[string]any{"pid": selfPID, "pidStart": selfStart, "host": "old-name"}, StateRunning},
		{"live owner, same host, this boot", map[string]any{"pid": selfPID, "pidStart": selfStart, "host": host, "bootId": bootID}, StateRunning},
		{"reused PID, other host", map[string]any{"pid": selfPID, "pidStart": selfStart + 1, "host": "old-name", "bootId": bootID}, StateInterrupted},
		{"live PID, another boot (rebooted since)", map[string]any{"pid": selfPID, "pidStart": selfStart, "host": host, "bootId": otherBoot}, StateInterrupted},
		{"no PID", map[string]any{"pid": 0, "host": "old-name", "bootId": bootID}, StateInterrupted},
	}
	s := New(t.TempDir())
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("run_%012x", i+1)
			writeRawRecord(t, s, id, tc.fields)
			got, err := s.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != tc.want {
				t.Errorf("state %s, want %s (record %v)", got.State, tc.want, tc.fields)
			}
			onDisk, err := readRecord(s.RunDir(id), id)
			if err != nil || onDisk.State != tc.want {
				t.Errorf("run.json: %+v %v, want state %s", onDisk, err, tc.want)
			}
		})
	}
}

// The real shape of defect 9: a crabbox-like process runs with another
// host name (its own UTS namespace, as in a container or after a laptop
// changed networks), is killed, and is read back under this host name.
func TestKilledOwnerUnderOtherHostnameIsInterrupted(t *testing.T) {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("needs root for a UTS namespace")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare(1)")
	}
	host, _ := os.Hostname()
	other := "crabbox-other-" + strings.ReplaceAll(host, ".", "-")
	if len(other) > 60 {
		other = other[:60]
	}
	state := t.TempDir()
	// unshare and sh exec: the owner is the helper process itself.
	cmd := helper(t, "hang", state)
	cmd.Args = []string{unshare, "-u", "sh", "-c", `hostname "$0" && exec "$@"`, other, os.Args[0], "-test.run=^$"}
	cmd.Path = unshare
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper: %v", err)
	}
	id := strings.TrimSpace(line)
	s := New(state)
	got, err := s.Get(id)
	// Positive control: the owner really ran under the other host name and
	// counts as running while it lives.
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil || got.State != StateRunning || got.Host != other || got.PID != cmd.Process.Pid || got.BootID != strings.TrimSpace(string(boot)) || got.BootID == "" {
		t.Fatalf("live helper run: %+v %v (want host %s, pid %d)", got, err, other, cmd.Process.Pid)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	got, err = s.Get(id)
	if err != nil || got.State != StateInterrupted {
		t.Fatalf("killed helper run (host %s, read on %s): state %s, want interrupted (%v)", got.Host, host, got.State, err)
	}
}
