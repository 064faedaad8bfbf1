package runs

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// tinyTmpfs mounts a tmpfs of size bytes on a fresh directory (root only)
// and unmounts it when the test ends.
func tinyTmpfs(t *testing.T, size string) string {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := filepath.Join(t.TempDir(), "tiny")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fill writes into dir/filler until the file system is full.
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "filler"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for range 1 << 20 {
		if _, err := f.Write(chunk); err != nil {
			return
		}
	}
	t.Fatal("file system never filled")
}

// Defect 10: output that fills the disk must not cost the run its outcome.
// The outcome (state, exit code, end) is recorded, and the record says the
// log is incomplete, why, and after how many bytes.
func TestFullDiskRecordsOutcome(t *testing.T) {
	state := tinyTmpfs(t, "1m")
	s := New(state)
	r, err := s.Start(Record{LeaseID: "cbx_0123456789ab", Command: []string{"big"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Update(func(rec *Record) { rec.Workdir = "/work/demo" }); err != nil {
		t.Fatal(err)
	}
	line := bytes.Repeat([]byte("x"), 1023)
	line = append(line, '\n')
	total := 0
	for range 3 << 10 { // 3 MiB, three times the file system
		n, _ := r.Log().Write(line)
		total += n
	}
	// The disk is full now; anything else wanting space fails too.
	fill(t, state)
	if err := r.Update(func(rec *Record) { rec.Slug = "blue-crab" }); err != nil {
		t.Logf("update on a full disk: %v", err)
	}
	if err := r.Finish(StateSucceeded, 0); err != nil {
		t.Errorf("Finish on a full disk: %v", err)
	}
	got, err := New(state).Get(r.ID())
	if err != nil {
		t.Fatal(err)
	}
	if got.State != StateSucceeded || got.ExitCode == nil || *got.ExitCode != 0 || got.EndedAt.IsZero() {
		t.Errorf("recorded %s exit %v ended %v, want succeeded exit 0 with an end", got.State, got.ExitCode, got.EndedAt)
	}
	if got.Slug != "blue-crab" || got.Workdir != "/work/demo" {
		t.Errorf("record lost its updates: slug %q workdir %q", got.Slug, got.Workdir)
	}
	raw, err := os.ReadFile(filepath.Join(s.RunDir(r.ID()), RecordName))
	if err != nil {
		t.Fatal(err)
	}
	var j map[string]any
	if err := json.Unmarshal(raw, &j); err != nil {
		t.Fatalf("run.json: %v\n%s", err, raw)
	}
	log, _, err := s.ReadLog(r.ID(), 0)
	if err != nil {
		t.Fatal(err)
	}
	// Positive control: the output did start arriving in the log.
	if len(log) < 64<<10 || !strings.HasPrefix(log, string(line)) {
		t.Errorf("log holds %d bytes, want the start of the output", len(log))
	}
	stopped, _ := j["logStoppedAt"].(float64)
	if j["logIncomplete"] != true || !strings.Contains(asString(j["logError"]), "no space left on device") || int(stopped) != len(log) {
		t.Errorf("run.json: logIncomplete=%v logError=%v logStoppedAt=%v (log holds %d bytes), want true, ENOSPC, the log size", j["logIncomplete"], j["logError"], j["logStoppedAt"], len(log))
	}
	if lb, _ := j["logBytes"].(float64); int(lb) != total {
		t.Errorf("logBytes=%v, want every byte of output (%d)", j["logBytes"], total)
	}
	if j["logTruncated"] != false {
		t.Errorf("logTruncated=%v: the start of the log was not dropped", j["logTruncated"])
	}
	if entries, _ := os.ReadDir(s.RunDir(r.ID())); len(entries) > 0 {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				t.Errorf("left in the run dir: %s", e.Name())
			}
		}
	}
}

func asString(v any) string { s, _ := v.(string); return s }

// The reserve exists while a run is running, holds at least minReserve
// bytes, and is gone once the run is finished or found interrupted.
func TestReserveLifetime(t *testing.T) {
	s := New(t.TempDir())
	reserve := func(r *Run) (int64, bool) {
		fi, err := os.Stat(filepath.Join(r.Dir(), reserveName))
		if err != nil {
			return 0, false
		}
		if m := fi.Mode().Perm(); m != fileMode {
			t.Errorf("reserve mode %v", m)
		}
		return fi.Size(), true
	}
	r, err := s.Start(Record{})
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := reserve(r); !ok || n < minReserve {
		t.Errorf("running run's reserve: %d bytes, present %v", n, ok)
	}
	big := strings.Repeat("f", 100<<10)
	if err := r.Update(func(rec *Record) { rec.Command = []string{big} }); err != nil {
		t.Fatal(err)
	}
	if n, _ := reserve(r); n < 200<<10 {
		t.Errorf("reserve of a 100 KiB record: %d bytes", n)
	}
	if err := r.Finish(StateFailed, 2); err != nil {
		t.Fatal(err)
	}
	if _, ok := reserve(r); ok {
		t.Error("reserve left after Finish")
	}

	killed, _ := s.Start(Record{})
	if err := killed.Update(func(rec *Record) { rec.PID, rec.PIDStart = deadPID(t), 0 }); err != nil {
		t.Fatal(err)
	}
	if got, _ := New(s.Dir).Get(killed.ID()); got.State != StateInterrupted {
		t.Fatalf("dead run: %s", got.State)
	}
	if _, ok := reserve(killed); ok {
		t.Error("reserve left after the run was found interrupted")
	}
}

// The release is recorded after Finish: before it the record is already
// finished (a kill during the release leaves it so), after it the phase is
// there and the end moved past it. It is refused before Finish.
func TestAddFinalPhase(t *testing.T) {
	s := New(t.TempDir())
	clock := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	s.Now = func() time.Time { return clock }
	r, err := s.Start(Record{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddFinalPhase(Phase{Name: "release"}); err == nil {
		t.Error("final phase accepted before Finish")
	}
	clock = clock.Add(time.Second)
	if err := r.Finish(StateSucceeded, 0); err != nil {
		t.Fatal(err)
	}
	onDisk, err := readRecord(r.Dir(), r.ID())
	if err != nil || onDisk.State != StateSucceeded || onDisk.Duration() != time.Second || len(onDisk.Phases) != 0 {
		t.Fatalf("after Finish: %+v %v", onDisk, err)
	}
	clock = clock.Add(3 * time.Second)
	if err := r.AddFinalPhase(Phase{Name: "release", Ms: 3000, Error: "coder stop: boom"}); err != nil {
		t.Fatal(err)
	}
	onDisk, err = readRecord(r.Dir(), r.ID())
	if err != nil || onDisk.State != StateSucceeded || *onDisk.ExitCode != 0 || onDisk.Duration() != 4*time.Second ||
		len(onDisk.Phases) != 1 || onDisk.Phases[0] != (Phase{Name: "release", Ms: 3000, Error: "coder stop: boom"}) {
		t.Errorf("after the release: %+v %v", onDisk, err)
	}
	if r.Record().Duration() != onDisk.Duration() {
		t.Errorf("in memory %s, on disk %s", r.Record().Duration(), onDisk.Duration())
	}
}

// When Finish cannot write the record, the outcome is kept and the final
// phase's write records it.
func TestFinishWriteErrorKeepsOutcome(t *testing.T) {
	s := New(t.TempDir())
	r, err := s.Start(Record{})
	if err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(r.Dir(), lockName)
	// A directory where the lock file should be: every record write fails.
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(lock, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := r.Finish(StateFailed, 3); err == nil {
		t.Fatal("Finish wrote a record it cannot lock")
	}
	if onDisk, _ := readRecord(r.Dir(), r.ID()); onDisk.State != StateRunning {
		t.Fatalf("control: run.json was written (%s)", onDisk.State)
	}
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}
	if err := r.AddFinalPhase(Phase{Name: "release", Skipped: true, Reason: "lease kept"}); err != nil {
		t.Fatal(err)
	}
	onDisk, err := readRecord(r.Dir(), r.ID())
	if err != nil || onDisk.State != StateFailed || onDisk.ExitCode == nil || *onDisk.ExitCode != 3 || onDisk.EndedAt.IsZero() || len(onDisk.Phases) != 1 {
		t.Errorf("after the final phase: %+v %v", onDisk, err)
	}
}
