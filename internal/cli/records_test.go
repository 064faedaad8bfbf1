package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/runs"
)

// A record whose log stopped early (the disk was full) makes `logs` say
// so, why and after how many bytes; `history --json` carries the fact.
func TestLogsSaysWhenLogIsIncomplete(t *testing.T) {
	te, s := histEnv(t)
	id := histAddRun(t, s, histRun{rec: runs.Record{LeaseID: "cbx_aaaaaaaaaaaa", StartedAt: histT0}, state: runs.StateSucceeded, log: "first part\n"})
	path := filepath.Join(s.RunDir(id), runs.RecordName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	rec["logIncomplete"], rec["logError"], rec["logStoppedAt"], rec["logBytes"] = true, "write output.0.log: no space left on device", 11, 4<<20
	data, _ = json.Marshal(rec)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := te.run(t, "logs", id)
	want := "note: log incomplete: write output.0.log: no space left on device after 11 bytes; the remaining 4194293 bytes of output were not kept\n"
	if code != 0 || out != "first part\n" || errOut != want {
		t.Errorf("logs: exit %d, out %q\nstderr %q\nwant   %q", code, out, errOut, want)
	}
	code, out, _ = te.run(t, "logs", id, "--json")
	if code != 0 || !strings.Contains(out, `"logIncomplete": true`) {
		t.Errorf("logs --json: %s", out)
	}
	code, out, _ = te.run(t, "history", "--json")
	var recs []map[string]any
	if err := json.Unmarshal([]byte(out), &recs); code != 0 || err != nil || len(recs) != 1 {
		t.Fatalf("history --json: %d %v %s", code, err, out)
	}
	if recs[0]["logIncomplete"] != true || recs[0]["logStoppedAt"] != float64(11) || !strings.Contains(recs[0]["logError"].(string), "no space left") {
		t.Errorf("history --json: %s", out)
	}

	// Control: a complete log prints no note.
	ok := histAddRun(t, s, histRun{rec: runs.Record{StartedAt: histT0}, state: runs.StateSucceeded, log: "all\n"})
	if code, out, errOut := te.run(t, "logs", ok); code != 0 || out != "all\n" || errOut != "" {
		t.Errorf("complete log: %d %q %q", code, out, errOut)
	}
}

// A record as crabbox wrote it before boot IDs, log and release fields
// (commit f398d28) still reads and renders the same.
func TestHistoryReadsRecordFromBefore(t *testing.T) {
	te, s := histEnv(t)
	data, err := os.ReadFile(filepath.Join("..", "runs", "testdata", "record-f398d28.json"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(s.RunDir("run_1a2b3c4d5e6f"), runs.RecordName), string(data))
	writeFile(t, filepath.Join(s.RunDir("run_1a2b3c4d5e6f"), "output.0.log"), "ok\n")
	code, out, errOut := te.run(t, "history")
	want := "run_1a2b3c4d5e6f cbx_0123456789ab blue-crab succeeded exit=0 duration=1m23s started=2026-11-30T09:00:00Z command=go test ./...\n"
	if code != 0 || out != want {
		t.Errorf("history: %d %q %s\nwant %q", code, out, errOut, want)
	}
	code, out, errOut = te.run(t, "logs", "run_1a2b3c4d5e6f")
	if code != 0 || out != "ok\n" || errOut != "" {
		t.Errorf("logs: %d %q %q", code, out, errOut)
	}
}

// The release after Finish joins the record: its phase is kept and the
// duration history shows covers it (the run summary's total=).
func TestHistoryDurationIncludesRelease(t *testing.T) {
	te, s := histEnv(t)
	clock := histT0
	s.Now = func() time.Time { return clock }
	r, err := s.Start(runs.Record{LeaseID: "cbx_aaaaaaaaaaaa", Command: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(4 * time.Second)
	if err := r.Finish(runs.StateSucceeded, 0); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(2500 * time.Millisecond)
	if err := r.AddFinalPhase(runs.Phase{Name: "release", Ms: 2500}); err != nil {
		t.Fatal(err)
	}
	if got := r.Record().Duration(); got != 6500*time.Millisecond {
		t.Errorf("record duration %s, want 6.5s", got)
	}
	code, out, _ := te.run(t, "history")
	if code != 0 || !strings.Contains(out, " succeeded exit=0 duration=6.5s ") {
		t.Errorf("history: %q, want duration=6.5s", out)
	}
	code, out, _ = te.run(t, "history", "--json")
	var recs []struct {
		DurationMs int64        `json:"durationMs"`
		Phases     []runs.Phase `json:"phases"`
	}
	if err := json.Unmarshal([]byte(out), &recs); code != 0 || err != nil || len(recs) != 1 {
		t.Fatalf("history --json: %d %v %s", code, err, out)
	}
	if recs[0].DurationMs != 6500 || len(recs[0].Phases) != 1 || recs[0].Phases[0].Name != "release" || recs[0].Phases[0].Ms != 2500 {
		t.Errorf("history --json: %+v", recs[0])
	}
}
