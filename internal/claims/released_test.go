package claims

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func rec(id, ws string, at time.Time) Released {
	return Released{LeaseID: id, WorkspaceID: ws, Workspace: "crabbox-" + id, ReleasedAt: at.UTC().Format(time.RFC3339)}
}

func TestReleasedRecords(t *testing.T) {
	s := New(t.TempDir())
	now := time.Date(2026, 8, 20, 12, 0, 0, 0, time.UTC)
	if recs, err := s.ListReleased(); err != nil || len(recs) != 0 {
		t.Fatalf("empty store: %v %v", recs, err)
	}
	for _, r := range []Released{rec("cbx_a", "ws1", now.Add(-time.Hour)), rec("cbx_b", "ws2", now)} {
		if err := s.PutReleased(r); err != nil {
			t.Fatal(err)
		}
	}
	recs, _ := s.ListReleased()
	if len(recs) != 2 || recs[0].LeaseID != "cbx_b" {
		t.Fatalf("want newest first: %+v", recs)
	}
	// A new record for ws1 replaces the old one (one record per workspace).
	if err := s.PutReleased(rec("cbx_c", "ws1", now)); err != nil {
		t.Fatal(err)
	}
	recs, _ = s.ListReleased()
	if len(recs) != 2 {
		t.Fatalf("records = %+v", recs)
	}
	for _, r := range recs {
		if r.LeaseID == "cbx_a" {
			t.Error("old record of ws1 kept")
		}
	}
	// Unusable files are skipped, not fatal.
	for name, body := range map[string]string{"garbage.json": "{", "cbx_x.json": `{"leaseID":"cbx_y","workspaceID":"w","releasedAt":"2026-08-20T12:00:00Z"}`, "cbx_z.json": `{"leaseID":"cbx_z","releasedAt":"2026-08-20T12:00:00Z"}`} {
		if err := os.WriteFile(filepath.Join(s.ReleasedDir(), name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if recs, err := s.ListReleased(); err != nil || len(recs) != 2 {
		t.Errorf("with junk: %+v %v", recs, err)
	}
	if err := s.DropReleasedWorkspace("ws2"); err != nil {
		t.Fatal(err)
	}
	if recs, _ := s.ListReleased(); len(recs) != 1 || recs[0].LeaseID != "cbx_c" {
		t.Errorf("after drop: %+v", recs)
	}
	for _, bad := range []Released{{LeaseID: "cbx_q", ReleasedAt: now.Format(time.RFC3339)}, {LeaseID: "../x", WorkspaceID: "w", ReleasedAt: now.Format(time.RFC3339)}, {LeaseID: "cbx_q", WorkspaceID: "w", ReleasedAt: "yesterday"}} {
		if err := s.PutReleased(bad); err == nil {
			t.Errorf("PutReleased(%+v) accepted", bad)
		}
	}
}

// Taking a released record for reuse is exclusive: of many concurrent
// takers (separate Stores on one dir, as separate processes would be) only
// one gets it.
func TestReleasedTakeIsExclusive(t *testing.T) {
	dir := t.TempDir()
	if err := New(dir).PutReleased(rec("cbx_a", "ws1", time.Now())); err != nil {
		t.Fatal(err)
	}
	var got atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := New(dir)
			err := s.AllocateTx(func(tx *Tx) error {
				recs, err := tx.Released()
				if err != nil || len(recs) == 0 {
					return err
				}
				time.Sleep(time.Millisecond)
				if err := tx.RemoveReleased(recs[0].LeaseID); err != nil {
					return err
				}
				got.Add(1)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got.Load() != 1 {
		t.Errorf("%d takers got the record, want 1", got.Load())
	}
}
