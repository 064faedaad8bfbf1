package runs

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPreflightSummary(t *testing.T) {
	p := Preflight{OS: "Debian 12", Kernel: "Linux 6.1.0", Arch: "x86_64", CPUs: 2,
		MemTotalBytes: 8 << 30, MemAvailableBytes: 3 << 29, DiskFreeBytes: 40 << 30,
		Tools: map[string]string{"git": "git version 2.39.5", "rsync": "rsync  version 3.2.7  protocol version 31", "node": ToolMissing, "zz": "weird\x1b tool", "aa": "v20.1.0"}}
	got := p.Summary([]string{"git", "rsync", "node"})
	want := []string{
		"Debian 12; Linux 6.1.0 x86_64; 2 CPUs; memory 8.0 GiB (1.5 GiB available); 40.0 GiB disk free in the workdir",
		`git 2.39.5, rsync 3.2.7, node missing, aa 20.1.0, zz weird\x1b tool`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Summary =\n%q\nwant\n%q", got, want)
	}
	if got := (Preflight{}).Summary(nil); len(got) != 0 {
		t.Errorf("empty snapshot summary %q", got)
	}
}

// The snapshot is stored with the record, comes back equal, and a clone
// does not share its tools.
func TestRecordPreflightRoundTrip(t *testing.T) {
	rec := Record{ID: "run_0123456789ab", State: StateSucceeded, StartedAt: time.Unix(1, 0).UTC(),
		Preflight: &Preflight{OS: "x", CPUs: 1, Tools: map[string]string{"git": "git version 2"}}}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"preflight":{"os":"x"`) {
		t.Errorf("JSON lacks the preflight: %s", b)
	}
	var back Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Preflight, rec.Preflight) {
		t.Errorf("round trip %+v, want %+v", back.Preflight, rec.Preflight)
	}
	c := rec.Clone()
	c.Preflight.Tools["git"] = "changed"
	if rec.Preflight.Tools["git"] != "git version 2" {
		t.Error("Clone shares the tools map")
	}
	plain, _ := json.Marshal(Record{ID: "run_0123456789ab"})
	if strings.Contains(string(plain), "preflight") {
		t.Errorf("a record without a snapshot mentions one: %s", plain)
	}
}
