package claims

import (
	"os"
	"testing"
	"time"
)

func TestTouch(t *testing.T) {
	s := New(t.TempDir())
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s.Now = func() time.Time { return t0 }
	if _, err := s.BindRepo("cbx_0123456789ab", "/repo", false, nil); err != nil {
		t.Fatal(err)
	}
	s.Now = func() time.Time { return t0.Add(time.Hour) }
	if err := s.Touch("cbx_0123456789ab"); err != nil {
		t.Fatal(err)
	}
	c, err := s.Get("cbx_0123456789ab")
	if err != nil || c.LastUsedAt != "2026-01-02T04:04:05Z" || c.ClaimedAt != "2026-01-02T03:04:05Z" || c.RepoRoot != "/repo" {
		t.Errorf("after Touch: %+v, %v", c, err)
	}
	// No claim: nothing is written.
	if err := s.Touch("cbx_ba9876543210"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Path("cbx_ba9876543210")); !os.IsNotExist(err) {
		t.Errorf("Touch made a claim for an unclaimed lease: %v", err)
	}
}
