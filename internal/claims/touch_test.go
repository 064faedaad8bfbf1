package claims

import (
	"os"
	"testing"
	"time"
)

func TestTouch(t *testing.T) {
	s := New(t.TempDir())
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, err := s.Update("cbx_0123456789ab", func(c *Claim, exists bool) error {
		return Bind(c, exists, "/repo", false, t0)
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Touch("cbx_0123456789ab", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	c, err := s.Get("cbx_0123456789ab")
	if err != nil || c.LastUsedAt != "2026-01-02T04:04:05Z" || c.ClaimedAt != "2026-01-02T03:04:05Z" || c.RepoRoot != "/repo" {
		t.Errorf("after Touch: %+v, %v", c, err)
	}
	// No claim: nothing is written.
	if err := s.Touch("cbx_ba9876543210", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Path("cbx_ba9876543210")); !os.IsNotExist(err) {
		t.Errorf("Touch made a claim for an unclaimed lease: %v", err)
	}
}
