// Package bundle writes the failure bundle of a failed or interrupted run:
// one bundle.tgz in the run's record dir holding what someone debugging
// the run asks for first (the command, lease, workspace, provider, git
// HEAD and dirty files, forwarded variable NAMES, timings, the preflight
// snapshot when the record has one, the log tail, the JUnit summary and
// the artifact manifest).
//
// Values of forwarded variables never reach the bundle: every entry is
// scrubbed of them (Redactor) before it is written, the log tail
// included.
package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/envfwd"
	"github.com/crabbox-dev/crabbox/internal/fsx"
	"github.com/crabbox-dev/crabbox/internal/results"
	"github.com/crabbox-dev/crabbox/internal/runs"
)

// Version is the bundle's summary.json format.
const Version = 1

// Entry names inside the bundle.
const (
	SummaryName   = "summary.json"
	RecordName    = "run.json"
	LogTailName   = "log-tail.txt"
	PreflightName = "preflight.json"
)

// LogTailLines and LogTailBytes bound the log tail.
const (
	LogTailLines = 200
	LogTailBytes = 64 << 10
)

// Git is the local checkout at the time of the bundle.
type Git struct {
	Head string `json:"head"`
	// Dirty are `git status --porcelain` entries ("XY path").
	Dirty          []string `json:"dirty"`
	DirtyTruncated int      `json:"dirtyTruncated,omitempty"` // entries left out
	Error          string   `json:"error,omitempty"`
}

// Input is what goes into a bundle.
type Input struct {
	Record runs.Record
	// RecordJSON is run.json as stored: it is bundled as it is, and a
	// top-level "preflight" member is also bundled as preflight.json.
	RecordJSON []byte
	FailedStep string
	// EnvNames are the names of the variables the command got.
	EnvNames []string
	Timing   map[string]any
	LogTail  string
	// LogTruncated: the run's log dropped output before the tail.
	LogTruncated bool
	Git          Git
	Released     bool
	Created      time.Time
	Redact       *Redactor
}

type summary struct {
	Version    int              `json:"version"`
	RunID      string           `json:"runId"`
	State      string           `json:"state"`
	ExitCode   *int             `json:"exitCode"`
	FailedStep string           `json:"failedStep"`
	Argv       []string         `json:"argv"`
	Shell      bool             `json:"shell"`
	Command    string           `json:"command"`
	Lease      leaseInfo        `json:"lease"`
	RepoRoot   string           `json:"repoRoot"`
	Git        Git              `json:"git"`
	EnvNames   []string         `json:"envNames"`
	StartedAt  time.Time        `json:"startedAt"`
	EndedAt    *time.Time       `json:"endedAt"`
	Phases     []runs.Phase     `json:"phases"`
	Timing     map[string]any   `json:"timing"`
	Results    *results.Summary `json:"results"`
	Artifacts  []runs.Artifact  `json:"artifacts"`
	Preflight  json.RawMessage  `json:"preflight"`
	LogTail    logInfo          `json:"logTail"`
	Created    time.Time        `json:"createdAt"`
	Redacted   []string         `json:"redactedNames"`
}

type leaseInfo struct {
	ID        string `json:"id"`
	Slug      string `json:"slug"`
	Provider  string `json:"provider"`
	Workspace string `json:"workspace"`
	Workdir   string `json:"workdir"`
	Released  bool   `json:"released"`
}

type logInfo struct {
	File      string `json:"file"`
	Lines     int    `json:"lines"`
	Bytes     int    `json:"bytes"`
	Truncated bool   `json:"truncated"`
}

// Preflight returns the top-level "preflight" member of a stored run.json
// (nil when there is none).
func Preflight(recordJSON []byte) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(recordJSON, &m) != nil {
		return nil
	}
	p, ok := m["preflight"]
	if !ok || string(p) == "null" {
		return nil
	}
	return p
}

// Build returns the bundle's bytes (a gzipped tar).
func Build(in Input) ([]byte, error) {
	red := in.Redact
	if red == nil {
		red = NewRedactor(nil)
	}
	rec := in.Record
	tail := tailOf(in.LogTail)
	names := append([]string(nil), in.EnvNames...)
	sort.Strings(names)
	s := summary{
		Version: Version, RunID: rec.ID, State: rec.State, ExitCode: rec.ExitCode, FailedStep: in.FailedStep,
		Argv: rec.Command, Shell: rec.Shell, Command: runs.CommandLine(rec.Command, rec.Shell),
		Lease:    leaseInfo{ID: rec.LeaseID, Slug: rec.Slug, Provider: rec.Provider, Workspace: rec.Workspace, Workdir: rec.Workdir, Released: in.Released},
		RepoRoot: rec.RepoRoot, Git: in.Git, EnvNames: names, StartedAt: rec.StartedAt,
		Phases: rec.Phases, Timing: in.Timing, Results: rec.Results, Artifacts: rec.Artifacts,
		Preflight: Preflight(in.RecordJSON),
		LogTail:   logInfo{File: LogTailName, Lines: strings.Count(tail, "\n"), Bytes: len(tail), Truncated: in.LogTruncated || len(tail) < len(in.LogTail)},
		Created:   in.Created.UTC(), Redacted: red.Names(),
	}
	if s.Argv == nil {
		s.Argv = []string{}
	}
	if s.EnvNames == nil {
		s.EnvNames = []string{}
	}
	if s.Git.Dirty == nil {
		s.Git.Dirty = []string{}
	}
	if !rec.EndedAt.IsZero() {
		end := rec.EndedAt
		s.EndedAt = &end
	}
	sum, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	files := []struct {
		name string
		data []byte
	}{
		{SummaryName, red.JSON(sum)},
		{LogTailName, []byte(red.Text(tail))},
	}
	if len(in.RecordJSON) > 0 {
		files = append(files, struct {
			name string
			data []byte
		}{RecordName, red.JSON(in.RecordJSON)})
	}
	if len(s.Preflight) > 0 {
		files = append(files, struct {
			name string
			data []byte
		}{PreflightName, red.JSON(s.Preflight)})
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	mtime := in.Created.UTC()
	for _, f := range files {
		h := &tar.Header{Name: rec.ID + "/" + f.name, Mode: 0o600, Size: int64(len(f.data)), ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Write builds the bundle and writes it to path atomically (0600).
func Write(path string, in Input) error {
	data, err := Build(in)
	if err != nil {
		return fmt.Errorf("failure bundle: %w", err)
	}
	if err := fsx.WriteFileAtomic(path, data, 0o600); err != nil {
		return fmt.Errorf("failure bundle: %w", err)
	}
	return nil
}

// tailOf is the last LogTailLines lines of log, at most LogTailBytes
// (cut at a line start when it can be).
func tailOf(log string) string {
	end := len(log)
	n := 0
	start := 0
	for i := end - 1; i >= 0; i-- {
		if log[i] == '\n' && i != end-1 {
			n++
			if n == LogTailLines {
				start = i + 1
				break
			}
		}
	}
	if end-start > LogTailBytes {
		start = end - LogTailBytes
		if i := strings.IndexByte(log[start:], '\n'); i >= 0 && i < end-start-1 {
			start += i + 1
		}
	}
	return log[start:]
}

// Redactor removes the values of forwarded variables from bundle text.
type Redactor struct {
	pairs []pair // longest value first
	names []string
}

type pair struct{ value, name string }

// MinRedactLen is the shortest value redacted for any name; values of
// credential-like names (envfwd.Denied, or *TOKEN*, *SECRET*,
// *PASSWORD*, *PASSWD*, *KEY*, *AUTH*, *CREDENTIAL*, *COOKIE*,
// *SESSION*) are redacted from MinSecretLen. Shorter values ("1",
// "true") would only mangle the text.
const (
	MinRedactLen = 6
	MinSecretLen = 3
)

// NewRedactor redacts the values of env (NAME -> value).
func NewRedactor(env map[string]string) *Redactor {
	r := &Redactor{}
	for name, v := range env {
		if len(v) >= MinRedactLen || (len(v) >= MinSecretLen && secretName(name)) {
			r.pairs = append(r.pairs, pair{v, name})
			r.names = append(r.names, name)
		}
	}
	sort.Slice(r.pairs, func(i, j int) bool {
		if len(r.pairs[i].value) != len(r.pairs[j].value) {
			return len(r.pairs[i].value) > len(r.pairs[j].value)
		}
		return r.pairs[i].name < r.pairs[j].name
	})
	sort.Strings(r.names)
	return r
}

func secretName(name string) bool {
	if envfwd.Denied(name) {
		return true
	}
	u := strings.ToUpper(name)
	for _, w := range []string{"TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "AUTH", "CREDENTIAL", "COOKIE", "SESSION"} {
		if strings.Contains(u, w) {
			return true
		}
	}
	return false
}

// Names are the variables whose values are redacted (sorted).
func (r *Redactor) Names() []string {
	if r == nil || r.names == nil {
		return []string{}
	}
	return append([]string(nil), r.names...)
}

// Text replaces every value in s with [redacted NAME].
func (r *Redactor) Text(s string) string {
	if r == nil {
		return s
	}
	for _, p := range r.pairs {
		s = strings.ReplaceAll(s, p.value, "[redacted "+p.name+"]")
	}
	return s
}

// JSON redacts the string values (and keys) of a JSON document, keeping
// it valid JSON; data that is not JSON is redacted as text.
func (r *Redactor) JSON(data []byte) []byte {
	if r == nil || len(r.pairs) == 0 {
		return data
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return []byte(r.Text(string(data)))
	}
	v = r.walk(v)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return []byte(r.Text(string(data)))
	}
	return buf.Bytes()
}

func (r *Redactor) walk(v any) any {
	switch t := v.(type) {
	case string:
		return r.Text(t)
	case []any:
		for i := range t {
			t[i] = r.walk(t[i])
		}
		return t
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[r.Text(k)] = r.walk(x)
		}
		return out
	}
	return v
}
