package runs

// Shard is a shard's place in a sharded run (run --shards).
type Shard struct {
	Parent string   `json:"parent"` // the sharded run's ID
	Index  int      `json:"index"`  // 1-based
	Total  int      `json:"total"`
	Items  []string `json:"items,omitempty"` // the items it was given (split runs)
	// EstimateSec is the plan's estimate for those items (0 unknown).
	EstimateSec float64 `json:"estimateSec,omitempty"`
}

// ShardRef is one shard as its parent record keeps it.
type ShardRef struct {
	Index int    `json:"index"`
	RunID string `json:"runId"` // the shard's own run record ("" before it starts)
	// LeaseID and Workspace are the shard's lease ("" when none was had).
	LeaseID   string `json:"leaseId"`
	Workspace string `json:"workspace,omitempty"`
	State     string `json:"state"` // pending, running, or a run state
	Exit      *int   `json:"exitCode"`
	// FailedStep is where a failed shard stopped (lease, sync, command, ...).
	FailedStep string `json:"failedStep,omitempty"`
	Items      int    `json:"items"`
	// The shard's phases (ms): getting the lease, the sync, the command,
	// and its whole run.
	LeaseMs   int64 `json:"leaseMs"`
	SyncMs    int64 `json:"syncMs"`
	CommandMs int64 `json:"commandMs"`
	WallMs    int64 `json:"wallMs"`
}

// StatePending is a shard that has not started.
const StatePending = "pending"

// IsShard reports whether r is one shard of a sharded run.
func (r Record) IsShard() bool { return r.Shard != nil }

// IsSharded reports whether r is a sharded run's parent record.
func (r Record) IsSharded() bool { return len(r.Shards) > 0 }
