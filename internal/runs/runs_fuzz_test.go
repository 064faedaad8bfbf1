package runs

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// FuzzRunRecord: a fuzzed run.json never panics Get, Scan or ReadLog; a
// record that is accepted can always be printed again (history --json,
// and the interrupted rewrite), has a non-negative duration, and a valid
// state.
func FuzzRunRecord(f *testing.F) {
	const id = "run_0123456789ab"
	code := 3
	good, _ := encodeRecord(&Record{ID: id, LeaseID: "cbx_0123456789ab", Slug: "blue-crab", Provider: "coder",
		Command: []string{"go", "test"}, State: StateFailed, ExitCode: &code})
	for _, s := range []string{
		string(good),
		"",
		"null",
		"[]",
		`{}`,
		`{"id":"run_0123456789ab","state":"running","startedAt":"2026-01-01T00:00:00Z","pid":1}`,
		`{"id":"run_0123456789ab","state":"running","startedAt":"2026-01-01T00:00:00Z","pid":-1}`,
		`{"id":"run_0123456789ab","state":"running","startedAt":"2026-01-01T00:00:00Z","pid":2147483647,"host":"elsewhere"}`,
		`{"id":"run_0123456789ab","state":"running","startedAt":"9999-12-31T23:59:59-23:59","pid":999999999}`,
		`{"id":"run_0123456789ab","state":"succeeded","startedAt":"0000-01-01T00:00:00+01:00","endedAt":"0000-01-01T00:00:00+23:00"}`,
		`{"id":"run_0123456789ab","state":"failed","startedAt":"2026-01-01T00:00:00Z","endedAt":"2025-01-01T00:00:00Z","exitCode":-1}`,
		`{"id":"run_0123456789ab","state":"interrupted","logBytes":-5,"phases":[{"name":"x","ms":-1}],"results":{"files":["a"],"failed":[{}]}}`,
		`{"id":"run_ffffffffffff","state":"failed"}`,
		`{"id":"run_0123456789ab","state":"weird"}`,
		`{"id":"run_0123456789ab","state":"failed","command":["$(touch x)","\u0000"]}`,
	} {
		f.Add(s, "log line\n")
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data, log string) {
		state := filepath.Join(dir, "state")
		os.RemoveAll(state)
		s := New(state)
		rd := s.RunDir(id)
		if err := os.MkdirAll(rd, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rd, RecordName), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rd, segName(0)), []byte(log), 0o600); err != nil {
			t.Fatal(err)
		}
		rec, err := s.Get(id)
		recs, skipped, serr := s.Scan(Filter{})
		if serr != nil {
			t.Fatalf("Scan: %v", serr)
		}
		if err != nil {
			if errors.Is(err, ErrNotFound) || exitcode.Code(err) == exitcode.Usage {
				t.Fatalf("Get of an existing dir: %v", err)
			}
			if len(recs) != 0 || skipped != 1 {
				t.Fatalf("bad record listed: %d recs, %d skipped", len(recs), skipped)
			}
			return
		}
		if len(recs) != 1 || skipped != 0 {
			t.Fatalf("good record: %d recs, %d skipped", len(recs), skipped)
		}
		if !ValidState(rec.State) || rec.ID != id {
			t.Fatalf("record %+v", rec)
		}
		if rec.Duration() < 0 {
			t.Fatalf("negative duration %v", rec.Duration())
		}
		for _, r := range []Record{*rec, recs[0]} {
			if _, err := json.Marshal(r); err != nil {
				t.Fatalf("accepted record cannot be printed: %v\n%s", err, data)
			}
		}
		if _, _, err := s.ReadLog(id, 3); err != nil {
			t.Fatalf("ReadLog: %v", err)
		}
	})
}
