// Package provider is the seam between crabbox's commands and the systems
// that hand out remote Linux machines (Coder workspaces, plain SSH hosts).
// It holds the neutral lease type, the requests and results of the lease
// lifecycle, the Provider interface every backend implements, and the
// registry commands use to build one by name. Providers never print: they
// return values and errors, and report progress as Events.
package provider

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/lease"
)

// Lease is one remote machine as crabbox sees it, whatever provides it.
// Provider specifics live in Labels.
type Lease struct {
	ID       string
	Slug     string
	Provider string // the provider's canonical name
	// Workspace is the machine's short name (a Coder workspace name, an
	// SSH host's configured name).
	Workspace string
	// Ref is the canonical reference (Coder: owner/name; SSH: the host's
	// name), used in claims and messages.
	Ref string
	// WorkspaceID is the provider's stable ID for the machine (Coder's
	// workspace UUID; SSH: user@host:port).
	WorkspaceID string
	Owner       string
	State       string
	Ready       bool // the provider believes the machine can take a session
	Keep        bool
	ServerType  string // Coder: the template; SSH: "ssh-host"
	Template    string
	Labels      map[string]string
	// Claim is this machine's claim on the lease (nil when unclaimed).
	Claim *claims.Claim
	// Adopted is true when this resolve created the claim (a machine
	// adopted by name, with no claim here before).
	Adopted bool
	// Released is crabbox's released record of the machine (nil when
	// none): the lease was released and the machine is still crabbox's.
	Released *claims.Released
	// Owned is true when the machine carries crabbox ownership evidence.
	Owned bool
	// Unconfirmed is true when the lease was resolved from a live
	// persistent connection alone, without asking the provider's
	// inventory (Coder's fast path). A transport failure right after such
	// a resolve means the machine may be stopping behind crabbox's back:
	// the run resolves it again with ResolveRequest.Confirm.
	Unconfirmed bool
	// ReadyUnchecked is true when a fast-path resolve left Target's
	// ReadyCheck to the caller (ResolveRequest.DeferReady): the caller runs
	// it in its first round trip and resolves again with Confirm when it
	// fails.
	ReadyUnchecked bool
	Target         lease.Target
	// CreatedAt, LastTouchedAt and ExpiresAt come from the claim (zero when
	// unknown).
	CreatedAt, LastTouchedAt, ExpiresAt time.Time
	IdleTimeout                         time.Duration
}

// Ident is how messages and hints name the lease: its slug, else its ID.
func (l *Lease) Ident() string {
	if l.Slug != "" {
		return l.Slug
	}
	return l.ID
}

// ReadyFunc waits until a lease's machine answers over SSH.
type ReadyFunc func(ctx context.Context, l *Lease) error

// AcquireRequest asks for a new lease.
type AcquireRequest struct {
	Slug     string // requested slug (already validated); "" generates one
	Keep     bool   // keep the machine when acquisition fails after it was made
	RepoRoot string // repo the claim binds to (required)
	Reclaim  bool
	Ready    ReadyFunc // nil skips the SSH readiness wait
	// Reuse lets the lease take a machine crabbox released earlier instead
	// of making one (providers that provision).
	Reuse bool
}

// Mode says what a resolve may do.
type Mode int

const (
	// StatusOnly never mutates anything (status, inspect).
	StatusOnly Mode = iota
	// ReleaseOnly resolves for stop: no start, no SSH; a claimed machine
	// that is gone resolves to a "missing" lease so its claim can go.
	ReleaseOnly
	// Prepare starts a stopped machine, waits for SSH and claims it for
	// the repo (ssh, run --id).
	Prepare
)

// ResolveRequest names a lease by lease ID, slug, or the provider's names
// for the machine.
type ResolveRequest struct {
	Ident    string
	Mode     Mode
	RepoRoot string // Prepare: the repo to claim for
	Reclaim  bool
	Ready    ReadyFunc // Prepare: SSH readiness wait
	// Open, when set, is used instead of Ready for a lease the provider
	// believes ready (open the tunnel without a separate ready check).
	Open ReadyFunc
	// Confirm asks the provider's inventory even when a live persistent
	// connection could answer alone (no fast path).
	Confirm bool
	// DeferReady says the caller runs Target.ReadyCheck itself, folded
	// into its first round trip, when the lease comes back ReadyUnchecked:
	// a fast path may then skip its own check (one ssh less per warm run).
	DeferReady bool
}

// Release actions.
const (
	ActionStop   = "stop"
	ActionDelete = "delete"
	// ActionForget drops the claim of a machine that no longer exists, or
	// (SSH) of a host that is simply handed back.
	ActionForget = "forget"
)

// ReleaseRequest is who asks for a release: the repo the command runs in
// (a claim bound to another repo needs Reclaim); empty skips the check.
type ReleaseRequest struct {
	RepoRoot string
	Reclaim  bool
}

// ReleaseResult says what a release did.
type ReleaseResult struct {
	Action  string // stop | delete | forget
	Skipped string // non-empty when no provider call was needed (why)
	// Released is true when a released record was kept.
	Released bool
}

// ClaimKeptError says a release did its provider part (Result) but the
// local claim could not be removed (e.g. a read-only state dir). Only the
// claim file at Path remains.
type ClaimKeptError struct {
	LeaseID string
	Path    string
	Result  ReleaseResult
	Err     error
}

func (e *ClaimKeptError) Error() string {
	return fmt.Sprintf("removing claim %s (%s): %v", e.LeaseID, e.Path, e.Err)
}

func (e *ClaimKeptError) Unwrap() error { return e.Err }

// CleanupRequest says what a cleanup may do.
type CleanupRequest struct {
	DryRun bool
	// DeleteReleased enables deleting crabbox's own released machines
	// released at least ReleasedOlderThan ago (--released-older-than).
	DeleteReleased    bool
	ReleasedOlderThan time.Duration
}

// CleanupDecision is what cleanup decided (and did) for one machine.
type CleanupDecision struct {
	Workspace string
	Ref       string
	LeaseID   string
	Action    string // stop | delete | forget | "" (skip)
	Reason    string
	Done      bool // the action ran (not dry-run)
	// Released is true for a decision on a released record (not a claim).
	Released    bool
	WorkspaceID string
}

// Check is one doctor check.
type Check struct {
	Status  string // pass | failed | skip
	Name    string
	Message string
	Details map[string]string
}

// DoctorReport is a provider's part of `crabbox doctor`.
type DoctorReport struct {
	Checks  []Check
	Summary string // e.g. "provider=coder cli=ready auth=ready inventory=ready mutation=false"
	OK      bool
}

// Event is something a lifecycle flow wants the user to know while it
// runs. Providers never print; commands render events.
type Event struct {
	Kind    string // EventProvisioning, EventStarting, ... (below)
	Lease   *Lease
	Message string
	Err     error  // EventDone: the step failed
	Action  string // EventReleasing: ActionStop or ActionDelete
}

// Event kinds. A step begun by EventProvisioning, EventStarting,
// EventWaiting or EventReleasing ends with EventDone (Err set when it
// failed), except that a failed create is followed by EventRollback.
const (
	EventProvisioning = "provisioning" // before a machine is made; Lease is set
	EventStarting     = "starting"     // before a stopped machine is started; Lease is set
	EventWaiting      = "waiting"      // a build the provider runs is awaited; Lease and Message set
	EventReleasing    = "releasing"    // before stop/delete; Lease (may be partial) and Action set
	EventDone         = "done"         // the announced step ended; Err when it failed
	EventWarning      = "warning"      // Message is set
	EventRollback     = "rollback"     // Message says what is being undone
	EventReusing      = "reusing"      // a released machine is taken for a new lease; Lease and Message set
)

// Provider is one backend's lease lifecycle. Every implementation records
// its leases in local claims and never stops, deletes or takes a machine
// without an exact claim.
type Provider interface {
	// Name is the canonical name recorded in claims ("coder", "ssh").
	Name() string
	// Acquire makes or takes a machine for a new lease and claims it.
	Acquire(ctx context.Context, req AcquireRequest) (*Lease, error)
	// Resolve finds the lease req.Ident names.
	Resolve(ctx context.Context, req ResolveRequest) (*Lease, error)
	// Release gives a resolved lease back (stop, delete or forget, per
	// its claim) and removes its claim.
	Release(ctx context.Context, l *Lease, req ReleaseRequest) (ReleaseResult, error)
	// List returns crabbox's leases (all: also machines it does not own).
	List(ctx context.Context, all bool) ([]*Lease, error)
	// Cleanup releases leases whose claim expired.
	Cleanup(ctx context.Context, req CleanupRequest) ([]CleanupDecision, error)
	// Doctor checks the provider's prerequisites without mutating anything.
	Doctor(ctx context.Context) DoctorReport
	// ClaimMatches reports whether a local claim of this provider is named
	// by ident (the lease ID, slug or one of the machine's names).
	ClaimMatches(c claims.Claim, ident string) bool
	// ReleaseFlags are the provider's flags a `crabbox stop` needs to
	// repeat what this process would do with l (e.g. the delete-on-release
	// setting); l may be nil (a lease only known by name); nil when none.
	ReleaseFlags(l *Lease) []string
}

// StateReady is the lease state of a machine that answers over SSH.
const StateReady = "ready"

// StopCommand is the one command that releases a lease by hand: `crabbox
// stop` with the provider and the flags (ReleaseFlags) that make it release
// the lease the way this process would. ident names the lease (its slug or
// ID, or a machine name).
func StopCommand(p Provider, ident string) string {
	parts := []string{"crabbox", "stop", "--provider", p.Name()}
	parts = append(parts, p.ReleaseFlags(nil)...)
	return strings.Join(append(parts, "--id", ident), " ")
}

// OwnerKeeper is implemented by providers that read and write the owner
// record themselves (in Acquire, Resolve with Prepare, and Release), under
// a lock on the machine; commands then skip their own owner round trip.
type OwnerKeeper interface {
	KeepsOwnerRecord() bool
}

// KeepsOwnerRecord reports whether p keeps the owner record itself.
func KeepsOwnerRecord(p Provider) bool {
	k, ok := p.(OwnerKeeper)
	return ok && k.KeepsOwnerRecord()
}
