package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/crabbox-dev/crabbox/internal/provider"
)

// leaseView is the normalized JSON of one lease: lowercase camelCase,
// no Go field names.
type leaseView struct {
	ID            string            `json:"id"`
	Slug          string            `json:"slug"`
	Provider      string            `json:"provider"`
	Target        string            `json:"target"`
	State         string            `json:"state"`
	Ready         bool              `json:"ready"`
	HasHost       bool              `json:"hasHost"`
	Host          string            `json:"host"`
	SSHUser       string            `json:"sshUser,omitempty"`
	SSHPort       int               `json:"sshPort,omitempty"`
	Network       string            `json:"network"`
	ServerID      string            `json:"serverId"`
	ServerType    string            `json:"serverType"`
	Workspace     string            `json:"workspace"`
	WorkspaceRef  string            `json:"workspaceRef"`
	WorkspaceID   string            `json:"workspaceId,omitempty"`
	Owner         string            `json:"owner,omitempty"`
	Keep          bool              `json:"keep"`
	Claimed       bool              `json:"claimed"`
	RepoRoot      string            `json:"repoRoot,omitempty"`
	LastTouchedAt string            `json:"lastTouchedAt"`
	IdleFor       string            `json:"idleFor"`
	IdleTimeout   string            `json:"idleTimeout"`
	ExpiresAt     string            `json:"expiresAt"`
	Labels        map[string]string `json:"labels"`
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func newLeaseView(l *provider.Lease, ready bool, now time.Time) leaseView {
	v := leaseView{
		ID: l.ID, Slug: l.Slug, Provider: l.Provider, Target: "linux", State: l.State,
		Ready: ready, HasHost: ready, Network: "public",
		ServerID: l.Ref, ServerType: l.ServerType, Workspace: l.Workspace, WorkspaceRef: l.Ref,
		WorkspaceID: l.WorkspaceID, Owner: l.Owner, Keep: l.Keep, Claimed: l.Claim != nil,
		LastTouchedAt: rfc3339(l.LastTouchedAt), ExpiresAt: rfc3339(l.ExpiresAt),
		Labels: map[string]string{},
	}
	for k, val := range l.Labels {
		v.Labels[k] = val
	}
	if ready {
		v.Host, v.SSHUser, v.SSHPort = l.Target.Host, l.Target.User, l.Target.Port
	}
	if l.Claim != nil {
		v.RepoRoot = l.Claim.RepoRoot
	}
	if !l.LastTouchedAt.IsZero() {
		v.IdleFor = now.Sub(l.LastTouchedAt).Round(time.Second).String()
	}
	if l.IdleTimeout > 0 {
		v.IdleTimeout = l.IdleTimeout.String()
	}
	return v
}

// statusLine is the human status line: key=value tokens in the order the peer tool prints them.
func statusLine(v leaseView) string {
	return fmt.Sprintf("%s slug=%s provider=%s target=%s windows_mode=- state=%s type=%s host=%s pond=- network=%s ready=%t has_host=%t idle_for=%s idle_timeout=%s expires=%s",
		v.ID, dash(v.Slug), v.Provider, v.Target, v.State, dash(v.ServerType), dash(v.Host), v.Network, v.Ready, v.HasHost, dash(v.IdleFor), dash(v.IdleTimeout), dash(v.ExpiresAt))
}

// inspectLines is the long form: one key=value per line, then labels.
func inspectLines(w io.Writer, v leaseView) {
	ssh := "-"
	if v.HasHost {
		ssh = fmt.Sprintf("-p %d %s@%s", v.SSHPort, v.SSHUser, v.Host)
	}
	for _, kv := range [][2]string{
		{"id", v.ID}, {"slug", v.Slug}, {"provider", v.Provider}, {"target", v.Target},
		{"windows_mode", ""}, {"state", v.State}, {"ready", fmt.Sprint(v.Ready)},
		{"server", v.ServerID}, {"workspace", v.Workspace}, {"workspace_id", v.WorkspaceID},
		{"type", v.ServerType}, {"host", v.Host}, {"network", v.Network}, {"ssh", ssh},
		{"keep", fmt.Sprint(v.Keep)}, {"claimed", fmt.Sprint(v.Claimed)}, {"repo", v.RepoRoot},
		{"idle_for", v.IdleFor}, {"idle_timeout", v.IdleTimeout}, {"last_touched", v.LastTouchedAt},
		{"expires", v.ExpiresAt},
	} {
		fmt.Fprintf(w, "%s=%s\n", kv[0], dash(kv[1]))
	}
	keys := make([]string, 0, len(v.Labels))
	for k := range v.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "label.%s=%s\n", k, v.Labels[k])
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
