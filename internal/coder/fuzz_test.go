package coder

import (
	"encoding/json"
	"reflect"
	"testing"
)

// encodeWorkspace renders w in the `coder list -o json` shape ParseList reads.
func encodeWorkspace(w Workspace) map[string]any {
	var agents []any
	for _, a := range w.Agents {
		agents = append(agents, map[string]any{
			"name": a.Name, "operating_system": a.OS, "status": a.Status, "lifecycle_state": a.Lifecycle,
		})
	}
	labels := map[string]any{}
	for k, v := range w.Labels {
		labels[k] = v
	}
	return map[string]any{
		"id": w.ID, "name": w.Name, "owner_name": w.Owner,
		"template_name": w.Template, "template_display_name": w.TemplateDisplay,
		"last_used_at": w.LastUsedAt,
		"latest_build": map[string]any{
			"status": w.Status, "transition": w.Transition,
			"resources": []any{map[string]any{"agents": agents}},
		},
		"labels": labels,
	}
}

func canon(list []Workspace) []Workspace {
	out := make([]Workspace, len(list))
	for i, w := range list {
		if len(w.Agents) == 0 {
			w.Agents = nil
		}
		if len(w.Labels) == 0 {
			w.Labels = nil
		}
		out[i] = w
	}
	return out
}

func FuzzParseList(f *testing.F) {
	f.Add(readTestdata(f, "list.json"))
	for _, s := range []string{
		"", "No workspaces found!", "null", "[]", "garbage", `[1]`,
		`{"workspaces":[{"id":"ws1","name":"crabbox-blue","template_name":"go-dev","latest_build":{"status":"stopped"}}]}`,
		`{"items":[{"name":"shared","owner":{"name":"alice"}}]}`,
		`{"data":null}`,
		`{"id":"ws1","name":"shared","owner_name":"alice","labels":{"crabbox":"true","n":1},"agents":[{"os":"linux","status":"connected"}]}`,
		`[{"latest_build":{"resources":[{"resources":[{"agents":[{"operating_system":"linux","status":"ready","lifecycle":"ready"}]}]}]}}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		list, err := ParseList(in)
		if err != nil {
			if list != nil {
				t.Fatalf("error with rows: %v", err)
			}
			return
		}
		for _, w := range list {
			// Derived views never panic and are never empty.
			if w.State() == "" || w.ServerType() == "" {
				t.Fatalf("empty derived field: %+v", w)
			}
			_ = w.Ready()
			_, _, _ = Owned(w, "crabbox-")
			if HostAlias(w.Ref()) == "" {
				t.Fatalf("empty alias for %q", w.Ref())
			}
		}
		// Every parsed field survives a round trip through the canonical shape.
		rows := make([]any, len(list))
		for i, w := range list {
			rows[i] = encodeWorkspace(w)
		}
		b, err := json.Marshal(rows)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseList(b)
		if err != nil {
			t.Fatalf("re-parse: %v\n%s", err, b)
		}
		if !reflect.DeepEqual(canon(list), canon(again)) {
			t.Fatalf("round trip changed rows:\n%+v\n%+v", list, again)
		}
	})
}

func FuzzParseWhoAmI(f *testing.F) {
	f.Add(readTestdata(f, "whoami.json"))
	for _, s := range []string{"", `{"username":"alice"}`, "[]", "[{}]", "nope", `[{"username":"a","url":"u","user_id":1}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		w, err := ParseWhoAmI(in)
		if err != nil {
			if w != (WhoAmI{}) {
				t.Fatalf("error with value %+v", w)
			}
			return
		}
		if w.Username == "" {
			t.Fatal("success without username")
		}
		b, _ := json.Marshal([]map[string]string{{"url": w.URL, "username": w.Username, "user_id": w.UserID}})
		again, err := ParseWhoAmI(b)
		if err != nil || again != w {
			t.Fatalf("round trip: %+v %v, want %+v", again, err, w)
		}
	})
}
