package coder

import "github.com/crabbox-dev/crabbox/internal/provider"

// The lease lifecycle's types are the provider-neutral ones; these names
// keep the Coder code readable.
type (
	Lease           = provider.Lease
	Event           = provider.Event
	ReadyFunc       = provider.ReadyFunc
	AcquireRequest  = provider.AcquireRequest
	Mode            = provider.Mode
	ResolveRequest  = provider.ResolveRequest
	ReleaseRequest  = provider.ReleaseRequest
	ReleaseResult   = provider.ReleaseResult
	ClaimKeptError  = provider.ClaimKeptError
	CleanupRequest  = provider.CleanupRequest
	CleanupDecision = provider.CleanupDecision
	Check           = provider.Check
	DoctorReport    = provider.DoctorReport
)

// Resolve modes.
const (
	StatusOnly  = provider.StatusOnly
	ReleaseOnly = provider.ReleaseOnly
	Prepare     = provider.Prepare
)

// Release actions.
const (
	ActionStop   = provider.ActionStop
	ActionDelete = provider.ActionDelete
	ActionForget = provider.ActionForget
)

// Event kinds.
const (
	EventProvisioning = provider.EventProvisioning
	EventStarting     = provider.EventStarting
	EventWaiting      = provider.EventWaiting
	EventReleasing    = provider.EventReleasing
	EventDone         = provider.EventDone
	EventWarning      = provider.EventWarning
	EventRollback     = provider.EventRollback
	EventReusing      = provider.EventReusing
)
