//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/coder"
	"github.com/crabbox-dev/crabbox/internal/execx"
)

// envRunner runs commands with a fixed environment (the lab's).
type envRunner struct{ env []string }

func (r envRunner) Run(ctx context.Context, c execx.Cmd) (execx.Result, error) {
	// execx.OS appends c.Env to the parent's environment; the lab env must
	// win, and it does because later entries override earlier ones.
	c.Env = append(append([]string(nil), r.env...), c.Env...)
	return execx.OS{}.Run(ctx, c)
}

func labClient(t *testing.T) *coder.Client {
	t.Helper()
	return &coder.Client{Runner: envRunner{labEnv(t)}, CLI: lab.Coder}
}

func TestCoderWhoAmIParsesRealOutput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	who, err := labClient(t).WhoAmI(ctx)
	if err != nil {
		t.Fatalf("whoami: %v", err)
	}
	if who.Username != "admin" {
		t.Errorf("username = %q, want admin", who.Username)
	}
	if who.URL != lab.URL {
		t.Errorf("url = %q, want %q", who.URL, lab.URL)
	}
	if who.UserID == "" {
		t.Errorf("user id empty")
	}
}

func TestCoderCreateListDelete(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := labClient(t)
	name := fmt.Sprintf("e2e-client-%d", time.Now().UnixNano()%1_000_000)
	if err := c.Create(ctx, name, coder.CreateOptions{Template: lab.Template}); err != nil {
		t.Fatalf("create: %v", err)
	}
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer dcancel()
			_ = c.Delete(dctx, "admin/"+name)
		}
	})
	list, err := c.List(ctx, false)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	var ws *coder.Workspace
	for i := range list {
		if list[i].Name == name {
			ws = &list[i]
		}
	}
	if ws == nil {
		t.Fatalf("workspace %s not in list (%d rows)", name, len(list))
	}
	if ws.Owner != "admin" || ws.Ref() != "admin/"+name {
		t.Errorf("owner/ref = %q/%q", ws.Owner, ws.Ref())
	}
	if ws.ID == "" {
		t.Errorf("empty workspace ID")
	}
	if ws.Status != "running" {
		t.Errorf("status = %q, want running", ws.Status)
	}
	if ws.Template != "local" {
		t.Errorf("template = %q, want local", ws.Template)
	}
	if len(ws.Agents) == 0 || ws.Agents[0].Name != "main" {
		t.Fatalf("agents = %+v", ws.Agents)
	}
	if err := c.Delete(ctx, ws.Ref()); err != nil {
		t.Fatalf("delete: %v", err)
	}
	deleted = true
	list, err = c.List(ctx, false)
	if err != nil {
		t.Fatalf("list after delete: %v", err)
	}
	for _, w := range list {
		if w.Name == name {
			t.Errorf("workspace %s still listed after delete (status %s)", name, w.Status)
		}
	}
}
