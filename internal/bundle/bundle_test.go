package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/results"
	"github.com/crabbox-dev/crabbox/internal/runs"
)

func untar(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	out := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Mode != 0o600 {
			t.Errorf("%s: mode %o", h.Name, h.Mode)
		}
		b, _ := io.ReadAll(tr)
		out[h.Name] = b
	}
}

const secret = "s3cr3t-Value-9f8e7d"

func input() Input {
	code := 3
	rec := runs.Record{
		ID: "run_0123456789ab", LeaseID: "cbx_0123456789ab", Slug: "blue", Provider: "coder", Workspace: "me/ws",
		Workdir: "/w/cbx/repo", RepoRoot: "/src/repo", Command: []string{"sh", "-c", "echo " + secret + "; exit 3"},
		State: "failed", ExitCode: &code, StartedAt: time.Unix(1700000000, 0).UTC(), EndedAt: time.Unix(1700000060, 0).UTC(),
		Phases:    []runs.Phase{{Name: "sync.rsync", Ms: 120}},
		Results:   &results.Summary{Format: "junit", Tests: 2, Failures: 1, Failed: []results.Failure{{Suite: "pkg", Name: "TestA", Message: "boom " + secret}}},
		Artifacts: []runs.Artifact{{Path: "out/a.bin", Size: 3, SHA256: "abc"}},
	}
	recJSON, _ := json.Marshal(map[string]any{"id": rec.ID, "command": rec.Command, "preflight": map[string]any{"tools": map[string]string{"go": "go1.26"}}})
	return Input{
		Record: rec, RecordJSON: recJSON, FailedStep: "command",
		EnvNames: []string{"TOKEN", "CI", "CRABBOX_RUN_ID"},
		Timing:   map[string]any{"commandMs": 12, "leaseId": rec.LeaseID},
		LogTail:  "line one\nthe secret is " + secret + "\nshell=true\n",
		Git:      Git{Head: "deadbeef", Dirty: []string{" M a.go"}},
		Created:  time.Unix(1700000061, 0),
		Redact:   NewRedactor(map[string]string{"TOKEN": secret, "CI": "true", "PIN": "4711", "API_KEY": "k3y"}),
	}
}

// The bundle holds the run's facts in summary.json, run.json, the log
// tail and preflight.json; no forwarded value survives anywhere in it,
// while short harmless values stay readable.
func TestBuild(t *testing.T) {
	in := input()
	// Positive control: the inputs do hold the secret.
	if !strings.Contains(in.LogTail, secret) || !strings.Contains(string(in.RecordJSON), secret) {
		t.Fatal("inputs lack the secret")
	}
	data, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	files := untar(t, data)
	for _, name := range []string{SummaryName, RecordName, LogTailName, PreflightName} {
		if _, ok := files["run_0123456789ab/"+name]; !ok {
			t.Errorf("bundle lacks %s (has %v)", name, keys(files))
		}
	}
	for name, b := range files {
		if bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte("k3y")) {
			t.Errorf("%s holds a forwarded value:\n%s", name, b)
		}
	}
	if bytes.Contains(data, []byte(secret)) {
		t.Error("the compressed bundle holds the secret")
	}
	var s map[string]any
	if err := json.Unmarshal(files["run_0123456789ab/"+SummaryName], &s); err != nil {
		t.Fatalf("summary is not JSON: %v", err)
	}
	lease := s["lease"].(map[string]any)
	if s["runId"] != "run_0123456789ab" || s["failedStep"] != "command" || s["exitCode"] != 3.0 || lease["id"] != "cbx_0123456789ab" ||
		lease["provider"] != "coder" || lease["workspace"] != "me/ws" || s["git"].(map[string]any)["head"] != "deadbeef" {
		t.Errorf("summary %v", s)
	}
	if names := s["envNames"].([]any); len(names) != 3 || names[0] != "CI" {
		t.Errorf("envNames %v", names)
	}
	if s["preflight"] == nil || len(s["artifacts"].([]any)) != 1 || s["results"] == nil {
		t.Errorf("summary lacks preflight, artifacts or results: %v", s)
	}
	tail := string(files["run_0123456789ab/"+LogTailName])
	if !strings.Contains(tail, "[redacted TOKEN]") || !strings.Contains(tail, "shell=true") {
		t.Errorf("log tail %q", tail)
	}
	if !strings.Contains(string(files["run_0123456789ab/"+SummaryName]), `"shell": false`) {
		t.Error("a short value (CI=true) was redacted out of JSON structure")
	}
	if red := s["redactedNames"].([]any); len(red) != 2 || red[0] != "API_KEY" || red[1] != "TOKEN" {
		t.Errorf("redacted names %v (PIN 4711 is short and not credential-like by name; CI too short)", red)
	}
}

// No preflight member: no preflight.json, summary's preflight is null.
func TestBuildWithoutPreflight(t *testing.T) {
	in := input()
	in.RecordJSON = []byte(`{"id":"run_0123456789ab"}`)
	files := untar(t, must(Build(in)))
	if _, ok := files["run_0123456789ab/"+PreflightName]; ok {
		t.Error("preflight.json without a preflight")
	}
	var s map[string]any
	json.Unmarshal(files["run_0123456789ab/"+SummaryName], &s)
	if v, ok := s["preflight"]; !ok || v != nil {
		t.Errorf("preflight %v", v)
	}
}

func TestWrite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bundle.tgz")
	if err := Write(p, input()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%v %v", fi, err)
	}
}

func TestTailOf(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 500; i++ {
		b.WriteString("line\n")
	}
	if got := tailOf(b.String()); strings.Count(got, "\n") != LogTailLines {
		t.Errorf("%d lines", strings.Count(got, "\n"))
	}
	long := strings.Repeat("x", 100) + "\n" + strings.Repeat("y", LogTailBytes)
	if got := tailOf(long); len(got) > LogTailBytes {
		t.Errorf("%d bytes", len(got))
	}
	if got := tailOf("a\nb"); got != "a\nb" {
		t.Errorf("short: %q", got)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
