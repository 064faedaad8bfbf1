// Package coder drives the user's local Coder CLI: it parses `coder list`
// and `coder whoami` output, derives workspace names, ownership and SSH
// target pieces, and wraps the CLI invocations crabbox needs.
//
// Nothing here talks to the Coder API directly and no token ever appears on
// a command line; authentication stays in the Coder CLI's own login store.
package coder

import "strings"

// Agent is one workspace agent as reported by `coder list -o json`.
type Agent struct {
	Name      string
	OS        string // operating_system | os
	Status    string // connecting, connected, disconnected, timeout, ...
	Lifecycle string // lifecycle_state | lifecycle: created, starting, ready, ...
}

// Workspace is one row of the Coder inventory.
type Workspace struct {
	ID              string
	Name            string
	Owner           string
	Status          string // build status (top-level status, else latest_build.status)
	Transition      string // start, stop, delete
	Template        string // template_name | template.name
	TemplateDisplay string // template_display_name | template.display_name
	Agents          []Agent
	Labels          map[string]string
	LastUsedAt      string
}

// Ref is the workspace reference handed to the Coder CLI: owner/name when
// the owner is known, else the bare name.
func (w Workspace) Ref() string {
	if w.Owner != "" {
		return w.Owner + "/" + w.Name
	}
	return w.Name
}

// Ready reports whether the workspace can take SSH: some linux agent is
// connected (or ready) and its lifecycle is empty or ready.
func (w Workspace) Ready() bool {
	for _, a := range w.Agents {
		if agentReady(a) {
			return true
		}
	}
	return false
}

func agentReady(a Agent) bool {
	if !strings.EqualFold(strings.TrimSpace(a.OS), "linux") {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(a.Status)) {
	case "connected", "ready":
	default:
		return false
	}
	switch strings.ToLower(strings.TrimSpace(a.Lifecycle)) {
	case "", "ready":
		return true
	}
	return false
}

// Workspace states shown by crabbox.
const (
	StateReady    = "ready"
	StateRunning  = "running"
	StateStarting = "starting"
	StateStopped  = "stopped"
	StateUnknown  = "unknown"
	StateMissing  = "missing" // used for claims whose workspace is gone
)

// State is the displayed state: ready when an agent is ready,
// else the mapped build status, else the mapped transition.
func (w Workspace) State() string {
	if w.Ready() {
		return StateReady
	}
	if s := mapState(w.Status); s != "" {
		return s
	}
	if s := mapState(w.Transition); s != "" {
		return s
	}
	return StateUnknown
}

func mapState(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	switch s {
	case "":
		return ""
	case "ready":
		return StateReady
	case "running", "started":
		return StateRunning
	case "starting", "pending", "start":
		return StateStarting
	case "stopped", "stop", "stopping":
		return StateStopped
	}
	// failed, error, canceled, cancelled and anything else: itself.
	return s
}

// ServerType is the template display name, else the template name, else
// "coder-workspace".
func (w Workspace) ServerType() string {
	if t := strings.TrimSpace(w.TemplateDisplay); t != "" {
		return t
	}
	if t := strings.TrimSpace(w.Template); t != "" {
		return t
	}
	return "coder-workspace"
}
