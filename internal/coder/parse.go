package coder

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// noWorkspaces is what older Coder CLIs print instead of JSON for an empty
// inventory.
const noWorkspaces = "no workspaces found!"

// ParseList parses `coder list [--all] -o json` output.
//
// Accepted: empty output, "No workspaces found!" (and text starting with
// it), JSON null, an array of objects, an object holding such an array
// under "workspaces", "items" or "data", or a single workspace object.
// Anything else is an exit-5 error "coder list returned invalid JSON: ...".
func ParseList(out []byte) ([]Workspace, error) {
	s := bytes.TrimSpace(out)
	if len(s) == 0 || strings.HasPrefix(strings.ToLower(string(s)), noWorkspaces) {
		return []Workspace{}, nil
	}
	v, err := decodeJSON(s)
	if err != nil {
		return nil, invalidList(err)
	}
	var rows []any
	switch t := v.(type) {
	case nil:
		return []Workspace{}, nil
	case []any:
		rows = t
	case map[string]any:
		rows = []any{t}
		for _, k := range []string{"workspaces", "items", "data"} {
			inner, ok := t[k]
			if !ok {
				continue
			}
			if inner == nil {
				rows = nil
				break
			}
			if arr, ok := inner.([]any); ok {
				rows = arr
				break
			}
		}
	default:
		return nil, invalidList(fmt.Errorf("top-level JSON %s is not an array or object", jsonKind(v)))
	}
	list := make([]Workspace, 0, len(rows))
	for i, r := range rows {
		obj, ok := r.(map[string]any)
		if !ok {
			return nil, invalidList(fmt.Errorf("element %d is %s, not an object", i, jsonKind(r)))
		}
		list = append(list, parseWorkspace(obj))
	}
	return list, nil
}

func invalidList(err error) error {
	return exitcode.Errorf(exitcode.NotFound, "coder list returned invalid JSON: %v", err)
}

// decodeJSON decodes exactly one JSON value, keeping numbers as
// json.Number, and rejects trailing data.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return v, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func parseWorkspace(o map[string]any) Workspace {
	lb, _ := o["latest_build"].(map[string]any)
	tmpl, _ := o["template"].(map[string]any)
	w := Workspace{
		ID:              first(str(o["id"])),
		Name:            first(str(o["name"]), str(o["workspace_name"]), str(lb["workspace_name"])),
		Owner:           parseOwner(o, lb),
		Status:          first(str(o["status"]), str(lb["status"])),
		Transition:      first(str(o["transition"]), str(lb["transition"])),
		Template:        first(str(o["template_name"]), str(tmpl["name"])),
		TemplateDisplay: first(str(o["template_display_name"]), str(tmpl["display_name"])),
		LastUsedAt:      first(str(o["last_used_at"])),
	}
	if lb != nil {
		w.Agents = collectAgents(lb, w.Agents)
	}
	w.Agents = collectAgents(o, w.Agents)
	if labels, ok := o["labels"].(map[string]any); ok {
		for k, v := range labels {
			if s, ok := v.(string); ok {
				if w.Labels == nil {
					w.Labels = map[string]string{}
				}
				w.Labels[k] = s
			}
		}
	}
	return w
}

func parseOwner(o, lb map[string]any) string {
	if ow, ok := o["owner"].(map[string]any); ok {
		if s := first(str(ow["name"]), str(ow["username"])); s != "" {
			return s
		}
	}
	return first(str(o["owner_name"]), str(o["owner"]), str(lb["workspace_owner_name"]))
}

// collectAgents appends the agents found under agents / workspace_agents
// and, recursively, under resources[] of o.
func collectAgents(o map[string]any, dst []Agent) []Agent {
	for _, k := range []string{"agents", "workspace_agents"} {
		arr, _ := o[k].([]any)
		for _, a := range arr {
			if m, ok := a.(map[string]any); ok {
				dst = append(dst, Agent{
					Name:      first(str(m["name"])),
					OS:        first(str(m["operating_system"]), str(m["os"])),
					Status:    first(str(m["status"])),
					Lifecycle: first(str(m["lifecycle_state"]), str(m["lifecycle"])),
				})
			}
		}
	}
	res, _ := o["resources"].([]any)
	for _, r := range res {
		if m, ok := r.(map[string]any); ok {
			dst = collectAgents(m, dst)
		}
	}
	return dst
}

// str returns v as a string when it is a JSON string or number.
func str(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case json.Number:
		return t.String()
	}
	return ""
}

// first returns the first argument that is non-empty after trimming, trimmed.
func first(vals ...string) string {
	for _, v := range vals {
		if s := strings.TrimSpace(v); s != "" {
			return s
		}
	}
	return ""
}

// WhoAmI is the logged-in Coder identity.
type WhoAmI struct {
	URL      string
	Username string
	UserID   string
}

// ParseWhoAmI parses `coder whoami -o json`: a one-element array in real
// output, a bare object also accepted. Empty or unusable output (no
// username) is an error.
func ParseWhoAmI(out []byte) (WhoAmI, error) {
	s := bytes.TrimSpace(out)
	if len(s) == 0 {
		return WhoAmI{}, exitcode.Errorf(exitcode.Failure, "coder whoami returned no output")
	}
	v, err := decodeJSON(s)
	if err != nil {
		return WhoAmI{}, exitcode.Errorf(exitcode.Failure, "coder whoami returned invalid JSON: %v", err)
	}
	if arr, ok := v.([]any); ok {
		if len(arr) == 0 {
			return WhoAmI{}, exitcode.Errorf(exitcode.Failure, "coder whoami returned an empty list")
		}
		v = arr[0]
	}
	o, ok := v.(map[string]any)
	if !ok {
		return WhoAmI{}, exitcode.Errorf(exitcode.Failure, "coder whoami returned invalid JSON: %s, not an object", jsonKind(v))
	}
	w := WhoAmI{
		URL:      first(str(o["url"])),
		Username: first(str(o["username"])),
		UserID:   first(str(o["user_id"])),
	}
	if w.Username == "" {
		return WhoAmI{}, exitcode.Errorf(exitcode.Failure, "coder whoami returned no username")
	}
	return w, nil
}
