// Package runs keeps crabbox's local run history (docs/commands/history.md): one
// directory per run under <stateDir>/runs/<runID>/ holding run.json (the
// record, replaced atomically) and the combined output log (the last 8 MiB,
// in rotating segments). history, logs and results read it with no server.
//
// A record left in state "running" by a process that is gone is reported,
// and rewritten best-effort, as "interrupted": it is never lost and never
// shown as running forever.
package runs

import (
	"bytes"
	"encoding/json"
	"maps"
	"time"

	"github.com/crabbox-dev/crabbox/internal/results"
)

// Run states.
const (
	StateRunning     = "running"
	StateSucceeded   = "succeeded"
	StateFailed      = "failed"
	StateInterrupted = "interrupted"
)

// States lists every run state, in lifecycle order.
var States = []string{StateRunning, StateSucceeded, StateFailed, StateInterrupted}

// ValidState reports whether s is one of States.
func ValidState(s string) bool {
	for _, v := range States {
		if s == v {
			return true
		}
	}
	return false
}

// Phase is one timed step of a run (sync.*, release, ...). Error is set
// when the step failed.
type Phase struct {
	Name    string `json:"name"`
	Ms      int64  `json:"ms"`
	Skipped bool   `json:"skipped"`
	Reason  string `json:"reason"`
	Error   string `json:"error,omitempty"`
}

// Record is one run. Command holds the command as given; callers redact
// secrets before storing it.
type Record struct {
	ID        string
	LeaseID   string
	Slug      string
	Provider  string
	Workspace string
	RepoRoot  string
	Workdir   string
	Command   []string
	Shell     bool
	State     string
	ExitCode  *int
	StartedAt time.Time
	EndedAt   time.Time

	Phases      []Phase
	SyncSkipped bool
	Results     *results.Summary
	// Artifacts is the manifest of the files fetched into the run's
	// artifacts dir (ArtifactsDir).
	Artifacts []Artifact
	// FailedStep is the step a failed or interrupted run stopped in:
	// lease, sync, command, results, artifacts or release ("" when it
	// succeeded).
	FailedStep string
	// Preflight is the machine snapshot of run --preflight (nil without).
	Preflight *Preflight
	// Shard places a shard's run in its sharded run (run --shards; nil
	// for any other run); Shards are a sharded run's parent record's
	// parts, by index.
	Shard  *Shard
	Shards []ShardRef

	LogTruncated bool  // the start of the output was dropped (more than MaxLogBytes)
	LogBytes     int64 // bytes of output, dropped ones included
	// The log stopped before the output ended (a write error such as a
	// full disk): LogError says why, LogStoppedAt after how many bytes of
	// output; the rest was not kept.
	LogIncomplete bool
	LogError      string
	LogStoppedAt  int64

	// The crabbox process that owns the record while it is running: its
	// PID, start time and boot decide whether it still runs (see
	// ownerAlive); Host is informational.
	PID      int
	PIDStart uint64 // the process's start time (Linux: /proc/<pid>/stat field 22); 0 when unknown
	BootID   string // the kernel's boot ID when the run started (Linux: /proc/sys/kernel/random/boot_id); "" when unknown
	Host     string
}

// Duration is EndedAt-StartedAt, or 0 while the run has no end.
func (r Record) Duration() time.Duration {
	if r.EndedAt.IsZero() || r.StartedAt.IsZero() || r.EndedAt.Before(r.StartedAt) {
		return 0
	}
	return r.EndedAt.Sub(r.StartedAt)
}

// recordJSON is the stored and printed shape (lowerCamel keys, fixed order).
type recordJSON struct {
	ID            string           `json:"id"`
	LeaseID       string           `json:"leaseId"`
	Slug          string           `json:"slug"`
	Provider      string           `json:"provider"`
	Workspace     string           `json:"workspace"`
	RepoRoot      string           `json:"repoRoot"`
	Workdir       string           `json:"workdir"`
	Command       []string         `json:"command"`
	Shell         bool             `json:"shell"`
	State         string           `json:"state"`
	ExitCode      *int             `json:"exitCode"`
	StartedAt     time.Time        `json:"startedAt"`
	EndedAt       *time.Time       `json:"endedAt"`
	DurationMs    *int64           `json:"durationMs"`
	Phases        []Phase          `json:"phases"`
	SyncSkipped   bool             `json:"syncSkipped"`
	Results       *results.Summary `json:"results"`
	Artifacts     []Artifact       `json:"artifacts,omitempty"`
	FailedStep    string           `json:"failedStep,omitempty"`
	Preflight     *Preflight       `json:"preflight,omitempty"`
	Shard         *Shard           `json:"shard,omitempty"`
	Shards        []ShardRef       `json:"shards,omitempty"`
	LogTruncated  bool             `json:"logTruncated"`
	LogBytes      int64            `json:"logBytes"`
	LogIncomplete bool             `json:"logIncomplete"`
	LogError      string           `json:"logError"`
	LogStoppedAt  int64            `json:"logStoppedAt"`
	PID           int              `json:"pid"`
	PIDStart      uint64           `json:"pidStart,omitempty"`
	BootID        string           `json:"bootId,omitempty"`
	Host          string           `json:"host,omitempty"`
}

// MarshalJSON writes lowerCamel keys; endedAt and durationMs are null while
// the run has no end, command and phases are always arrays.
func (r Record) MarshalJSON() ([]byte, error) {
	j := recordJSON{
		ID: r.ID, LeaseID: r.LeaseID, Slug: r.Slug, Provider: r.Provider, Workspace: r.Workspace,
		RepoRoot: r.RepoRoot, Workdir: r.Workdir, Command: r.Command, Shell: r.Shell,
		State: r.State, ExitCode: r.ExitCode, StartedAt: r.StartedAt,
		Phases: r.Phases, SyncSkipped: r.SyncSkipped, Results: r.Results, Artifacts: r.Artifacts, FailedStep: r.FailedStep, Preflight: r.Preflight,
		Shard: r.Shard, Shards: r.Shards,
		LogTruncated: r.LogTruncated, LogBytes: r.LogBytes,
		LogIncomplete: r.LogIncomplete, LogError: r.LogError, LogStoppedAt: r.LogStoppedAt, PID: r.PID, PIDStart: r.PIDStart, BootID: r.BootID, Host: r.Host,
	}
	if j.Command == nil {
		j.Command = []string{}
	}
	if j.Phases == nil {
		j.Phases = []Phase{}
	}
	if !r.EndedAt.IsZero() {
		end := r.EndedAt
		ms := r.Duration().Milliseconds()
		j.EndedAt, j.DurationMs = &end, &ms
	}
	return marshalPlain(j)
}

// marshalPlain is json.Marshal without HTML escaping (commands keep their
// &, < and >); an encoder that escapes still escapes the result.
func marshalPlain(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// UnmarshalJSON reads what MarshalJSON writes (durationMs is recomputed).
func (r *Record) UnmarshalJSON(data []byte) error {
	var j recordJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*r = Record{
		ID: j.ID, LeaseID: j.LeaseID, Slug: j.Slug, Provider: j.Provider, Workspace: j.Workspace,
		RepoRoot: j.RepoRoot, Workdir: j.Workdir, Command: j.Command, Shell: j.Shell,
		State: j.State, ExitCode: j.ExitCode, StartedAt: j.StartedAt,
		Phases: j.Phases, SyncSkipped: j.SyncSkipped, Results: j.Results, Artifacts: j.Artifacts, FailedStep: j.FailedStep, Preflight: j.Preflight,
		Shard: j.Shard, Shards: j.Shards,
		LogTruncated: j.LogTruncated, LogBytes: j.LogBytes,
		LogIncomplete: j.LogIncomplete, LogError: j.LogError, LogStoppedAt: j.LogStoppedAt, PID: j.PID, PIDStart: j.PIDStart, BootID: j.BootID, Host: j.Host,
	}
	if j.EndedAt != nil {
		r.EndedAt = *j.EndedAt
	}
	return nil
}

// Clone returns a deep copy.
func (r Record) Clone() Record {
	if r.Command != nil {
		r.Command = append([]string(nil), r.Command...)
	}
	if r.Phases != nil {
		r.Phases = append([]Phase(nil), r.Phases...)
	}
	if r.Artifacts != nil {
		r.Artifacts = append([]Artifact(nil), r.Artifacts...)
	}
	if r.ExitCode != nil {
		c := *r.ExitCode
		r.ExitCode = &c
	}
	r.Preflight = r.Preflight.clone()
	if r.Shard != nil {
		sh := *r.Shard
		sh.Items = append([]string(nil), sh.Items...)
		r.Shard = &sh
	}
	if r.Shards != nil {
		r.Shards = append([]ShardRef(nil), r.Shards...)
		for i := range r.Shards {
			if c := r.Shards[i].Exit; c != nil {
				v := *c
				r.Shards[i].Exit = &v
			}
		}
	}
	if r.Results != nil {
		s := *r.Results
		if s.Files != nil {
			s.Files = append([]string(nil), s.Files...)
		}
		if s.Failed != nil {
			s.Failed = append([]results.Failure(nil), s.Failed...)
		}
		s.Timings = maps.Clone(s.Timings)
		r.Results = &s
	}
	return r
}
