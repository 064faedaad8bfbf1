package coder

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseListRealSample(t *testing.T) {
	list, err := ParseList(readTestdata(t, "list.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("got %d workspaces, want 2", len(list))
	}
	want := []struct{ id, name string }{
		{"f943d906-28e1-46ad-8831-2487973cb214", "ws1"},
		{"d1bc61be-df42-43ce-949c-8683e6677dd6", "ws2"},
	}
	for i, w := range list {
		if w.ID != want[i].id || w.Name != want[i].name {
			t.Errorf("row %d = %q/%q, want %q/%q", i, w.ID, w.Name, want[i].id, want[i].name)
		}
		if w.Owner != "admin" || w.Ref() != "admin/"+want[i].name {
			t.Errorf("row %d owner %q ref %q", i, w.Owner, w.Ref())
		}
		if w.Status != "running" || w.Transition != "start" {
			t.Errorf("row %d status %q transition %q", i, w.Status, w.Transition)
		}
		if !w.Ready() || w.State() != "ready" {
			t.Errorf("row %d ready=%v state=%q", i, w.Ready(), w.State())
		}
		if len(w.Agents) != 1 {
			t.Fatalf("row %d agents = %+v", i, w.Agents)
		}
		if a := w.Agents[0]; a != (Agent{Name: "main", OS: "linux", Status: "connected", Lifecycle: "ready"}) {
			t.Errorf("row %d agent = %+v", i, a)
		}
		if w.Template != "local" || w.TemplateDisplay != "" || w.ServerType() != "local" {
			t.Errorf("row %d template %q/%q type %q", i, w.Template, w.TemplateDisplay, w.ServerType())
		}
		if !strings.HasPrefix(w.LastUsedAt, "2026-11-22T12:40:52") {
			t.Errorf("row %d last used %q", i, w.LastUsedAt)
		}
		if w.Labels != nil {
			t.Errorf("row %d labels %v", i, w.Labels)
		}
	}
}

func TestParseListEmpty(t *testing.T) {
	for _, in := range []string{"", "No workspaces found!", "  No workspaces found!\n", "[]", " null ", "\n\t"} {
		list, err := ParseList([]byte(in))
		if err != nil || len(list) != 0 {
			t.Errorf("ParseList(%q) = %v, %v; want empty, nil", in, list, err)
		}
	}
}

func TestParseListEnvelopes(t *testing.T) {
	row := `{"id":"ws1","name":"crabbox-blue","template_name":"go-dev","latest_build":{"status":"stopped"}}`
	for _, in := range []string{
		"[" + row + "]",
		`{"workspaces":[` + row + `]}`,
		`{"items":[` + row + `],"count":1}`,
		`{"data":[` + row + `]}`,
		row,
	} {
		list, err := ParseList([]byte(in))
		if err != nil {
			t.Fatalf("ParseList(%s): %v", in, err)
		}
		if len(list) != 1 {
			t.Fatalf("ParseList(%s) = %d rows", in, len(list))
		}
		w := list[0]
		if w.ID != "ws1" || w.Name != "crabbox-blue" || w.Status != "stopped" || w.Template != "go-dev" {
			t.Errorf("ParseList(%s) = %+v", in, w)
		}
		if w.State() != "stopped" || w.Ready() || w.Ref() != "crabbox-blue" || w.ServerType() != "go-dev" {
			t.Errorf("state %q ready %v ref %q type %q", w.State(), w.Ready(), w.Ref(), w.ServerType())
		}
	}
	list, err := ParseList([]byte(`{"workspaces":[],"count":0}`))
	if err != nil || len(list) != 0 {
		t.Errorf("empty envelope = %v, %v", list, err)
	}
	list, err = ParseList([]byte(`{"workspaces":null}`))
	if err != nil || len(list) != 0 {
		t.Errorf("null envelope = %v, %v", list, err)
	}
}

func TestParseListInvalid(t *testing.T) {
	for _, in := range []string{
		"garbage",
		"{",
		`[1]`,
		`["ws1"]`,
		`[null]`,
		`[{"name":"a"}, 3]`,
		`"a string"`,
		`42`,
		`true`,
		`[{"name":"a"}] trailing`,
		`[{"name":"a"}][]`,
		"Error: something went wrong",
	} {
		_, err := ParseList([]byte(in))
		if err == nil {
			t.Errorf("ParseList(%q): no error", in)
			continue
		}
		if exitcode.Code(err) != exitcode.NotFound {
			t.Errorf("ParseList(%q) exit code %d, want 5", in, exitcode.Code(err))
		}
		if !strings.HasPrefix(err.Error(), "coder list returned invalid JSON: ") {
			t.Errorf("ParseList(%q) error %q", in, err)
		}
	}
}

func TestParseListFields(t *testing.T) {
	in := `[
	 {"id":"a1","workspace_name":"alt","owner":{"username":"bob"},"transition":"stop",
	  "template":{"name":"tpl","display_name":"Template"},
	  "labels":{"crabbox":"true","n":3,"slug":"blue"},
	  "agents":[{"name":"x","os":"Linux","status":"ready","lifecycle":""}]},
	 {"id":"a2","name":"n2","owner":{"name":"carol","username":"c"},"owner_name":"zed","status":"running",
	  "latest_build":{"status":"stopped","workspace_agents":[{"name":"w","operating_system":"linux","status":"connecting","lifecycle_state":"starting"}],
	    "resources":[{"resources":[{"agents":[{"name":"deep","operating_system":"windows","status":"connected"}]}]}]}},
	 {"id":7,"name":"n3","owner_name":"dan","owner":"ignored","template_display_name":"Go dev","template_name":"go"},
	 {"name":"n4","owner":"erin","latest_build":{"transition":"start","status":"failed"}}
	]`
	list, err := ParseList([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 4 {
		t.Fatalf("got %d", len(list))
	}
	a := list[0]
	if a.Name != "alt" || a.Owner != "bob" || a.Template != "tpl" || a.TemplateDisplay != "Template" || a.Transition != "stop" {
		t.Errorf("row0 %+v", a)
	}
	if !reflect.DeepEqual(a.Labels, map[string]string{"crabbox": "true", "slug": "blue"}) {
		t.Errorf("row0 labels %v", a.Labels)
	}
	if !a.Ready() || a.State() != "ready" || a.ServerType() != "Template" {
		t.Errorf("row0 ready %v state %q", a.Ready(), a.State())
	}
	b := list[1]
	if b.Owner != "carol" || b.Status != "running" || len(b.Agents) != 2 {
		t.Errorf("row1 %+v", b)
	}
	// Agent still connecting/starting: running, not ready.
	if b.Ready() || b.State() != "running" {
		t.Errorf("row1 ready %v state %q", b.Ready(), b.State())
	}
	c := list[2]
	if c.ID != "7" || c.Owner != "dan" || c.ServerType() != "Go dev" || c.State() != "unknown" {
		t.Errorf("row2 %+v state %q", c, c.State())
	}
	d := list[3]
	if d.Owner != "erin" || d.State() != "failed" {
		t.Errorf("row3 %+v state %q", d, d.State())
	}
}

func TestState(t *testing.T) {
	linux := func(status, life string) []Agent {
		return []Agent{{Name: "main", OS: "linux", Status: status, Lifecycle: life}}
	}
	cases := []struct {
		w     Workspace
		state string
		ready bool
	}{
		{Workspace{Status: "running", Agents: linux("connected", "ready")}, "ready", true},
		{Workspace{Status: "running", Agents: linux("connected", "")}, "ready", true},
		{Workspace{Status: "running", Agents: linux("CONNECTED", "Ready")}, "ready", true},
		{Workspace{Status: "running", Agents: linux("connecting", "starting")}, "running", false},
		{Workspace{Status: "running", Agents: linux("connected", "starting")}, "running", false},
		{Workspace{Status: "running", Agents: linux("connected", "start_error")}, "running", false},
		{Workspace{Status: "running", Agents: []Agent{{OS: "windows", Status: "connected"}}}, "running", false},
		{Workspace{Status: "started"}, "running", false},
		{Workspace{Status: "pending"}, "starting", false},
		{Workspace{Status: "starting"}, "starting", false},
		{Workspace{Status: "stopped"}, "stopped", false},
		{Workspace{Status: "stopping"}, "stopped", false},
		{Workspace{Status: "Failed"}, "failed", false},
		{Workspace{Status: "canceled"}, "canceled", false},
		{Workspace{Status: "cancelled"}, "cancelled", false},
		{Workspace{Status: "error"}, "error", false},
		{Workspace{Status: "Deleting"}, "deleting", false},
		{Workspace{Transition: "stop"}, "stopped", false},
		{Workspace{Transition: "start"}, "starting", false},
		{Workspace{}, "unknown", false},
	}
	for _, tc := range cases {
		if got := tc.w.State(); got != tc.state {
			t.Errorf("%+v State = %q, want %q", tc.w, got, tc.state)
		}
		if got := tc.w.Ready(); got != tc.ready {
			t.Errorf("%+v Ready = %v, want %v", tc.w, got, tc.ready)
		}
	}
}

func TestServerTypeAndRef(t *testing.T) {
	if got := (Workspace{}).ServerType(); got != "coder-workspace" {
		t.Errorf("ServerType = %q", got)
	}
	if got := (Workspace{Name: "shared", Owner: "alice"}).Ref(); got != "alice/shared" {
		t.Errorf("Ref = %q", got)
	}
}

func TestParseWhoAmI(t *testing.T) {
	w, err := ParseWhoAmI(readTestdata(t, "whoami.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := WhoAmI{URL: "http://127.0.0.1:17080", Username: "admin", UserID: "5270452c-5535-4d7a-8bbc-b3b6c0312065"}
	if w != want {
		t.Errorf("got %+v, want %+v", w, want)
	}
	w, err = ParseWhoAmI([]byte(`{"username":"alice"}`))
	if err != nil || w.Username != "alice" {
		t.Errorf("bare object: %+v, %v", w, err)
	}
	for _, in := range []string{"", "  \n", "[]", "{}", `[{"url":"x"}]`, "nope", `"alice"`, `[1]`, `{"username":5}x`} {
		if _, err := ParseWhoAmI([]byte(in)); err == nil {
			t.Errorf("ParseWhoAmI(%q): no error", in)
		}
	}
}
