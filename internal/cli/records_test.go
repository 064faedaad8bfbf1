package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
