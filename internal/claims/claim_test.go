package claims

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

func TestExpired(t *testing.T) {
	last := time.Date(2026, 8, 20, 9, 0, 0, 0, time.UTC)
	lastS := last.Format(time.RFC3339)
	idle := int64(1800)
	deadline := last.Add(30*time.Minute + 12*time.Hour)
	tests := []struct {
		name string
		c    Claim
		now  time.Time
		want bool
	}{
		{"well before", Claim{LastUsedAt: lastS, IdleTimeoutSeconds: idle}, last.Add(time.Hour), false},
		{"exactly at deadline", Claim{LastUsedAt: lastS, IdleTimeoutSeconds: idle}, deadline, false},
		{"just after deadline", Claim{LastUsedAt: lastS, IdleTimeoutSeconds: idle}, deadline.Add(time.Second), true},
		{"idle passed, grace not", Claim{LastUsedAt: lastS, IdleTimeoutSeconds: idle}, last.Add(2 * time.Hour), false},
		{"long after", Claim{LastUsedAt: lastS, IdleTimeoutSeconds: idle}, last.Add(30 * 24 * time.Hour), true},
		{"zero idle", Claim{LastUsedAt: lastS}, last.Add(1000 * time.Hour), false},
		{"negative idle", Claim{LastUsedAt: lastS, IdleTimeoutSeconds: -5}, last.Add(1000 * time.Hour), false},
		{"empty lastUsedAt", Claim{IdleTimeoutSeconds: idle}, last.Add(1000 * time.Hour), false},
		{"garbage lastUsedAt", Claim{LastUsedAt: "yesterday", IdleTimeoutSeconds: idle}, last.Add(1000 * time.Hour), false},
		{"zero time lastUsedAt", Claim{LastUsedAt: "0001-01-01T00:00:00Z", IdleTimeoutSeconds: idle}, last, false},
		{"epoch lastUsedAt", Claim{LastUsedAt: "1970-01-01T00:00:00Z", IdleTimeoutSeconds: idle}, last, false},
		{"offset lastUsedAt", Claim{LastUsedAt: "2026-08-20T11:00:00+02:00", IdleTimeoutSeconds: idle}, deadline.Add(time.Second), true},
		{"huge idle", Claim{LastUsedAt: lastS, IdleTimeoutSeconds: 1 << 62}, last.Add(50 * 365 * 24 * time.Hour), false},
		{"now in the past", Claim{LastUsedAt: lastS, IdleTimeoutSeconds: idle}, last.Add(-time.Hour), false},
	}
	for _, tt := range tests {
		if got := tt.c.Expired(tt.now); got != tt.want {
			t.Errorf("%s: Expired = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestBind(t *testing.T) {
	t0 := time.Date(2026, 8, 20, 9, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Hour)
	s0 := t0.Format(time.RFC3339)
	s1 := t1.Format(time.RFC3339)

	t.Run("new claim", func(t *testing.T) {
		c := Claim{LeaseID: "cbx_000000000001"}
		if err := Bind(&c, false, "/src/a", false, t0.In(time.FixedZone("x", 3600))); err != nil {
			t.Fatal(err)
		}
		if c.RepoRoot != "/src/a" || c.ClaimedAt != s0 || c.LastUsedAt != s0 {
			t.Fatalf("%+v", c)
		}
	})
	t.Run("same repo keeps claimedAt", func(t *testing.T) {
		c := Claim{LeaseID: "cbx_000000000001", RepoRoot: "/src/a/", ClaimedAt: s0, LastUsedAt: s0}
		if err := Bind(&c, true, "/src/a", false, t1); err != nil {
			t.Fatal(err)
		}
		if c.ClaimedAt != s0 || c.LastUsedAt != s1 || c.RepoRoot != "/src/a" {
			t.Fatalf("%+v", c)
		}
	})
	t.Run("existing without claimedAt", func(t *testing.T) {
		c := Claim{LeaseID: "cbx_000000000001", RepoRoot: "/src/a"}
		if err := Bind(&c, true, "/src/a", false, t1); err != nil {
			t.Fatal(err)
		}
		if c.ClaimedAt != s1 {
			t.Fatalf("%+v", c)
		}
	})
	t.Run("existing without repo", func(t *testing.T) {
		c := Claim{LeaseID: "cbx_000000000001", ClaimedAt: s0}
		if err := Bind(&c, true, "/src/b", false, t1); err != nil {
			t.Fatal(err)
		}
		if c.RepoRoot != "/src/b" || c.ClaimedAt != s1 {
			t.Fatalf("%+v", c)
		}
	})
	t.Run("conflict", func(t *testing.T) {
		c := Claim{LeaseID: "cbx_000000000001", RepoRoot: "/src/a", ClaimedAt: s0, LastUsedAt: s0}
		err := Bind(&c, true, "/src/b", false, t1)
		want := "lease cbx_000000000001 is claimed by repo /src/a; use --reclaim to claim it for /src/b"
		if err == nil || err.Error() != want {
			t.Fatalf("err = %v, want %q", err, want)
		}
		if exitcode.Code(err) != exitcode.Usage {
			t.Fatalf("exit code %d", exitcode.Code(err))
		}
		if c.RepoRoot != "/src/a" || c.LastUsedAt != s0 {
			t.Fatalf("claim mutated on conflict: %+v", c)
		}
	})
	t.Run("reclaim", func(t *testing.T) {
		c := Claim{LeaseID: "cbx_000000000001", RepoRoot: "/src/a", ClaimedAt: s0, LastUsedAt: s0}
		if err := Bind(&c, true, "/src/b", true, t1); err != nil {
			t.Fatal(err)
		}
		if c.RepoRoot != "/src/b" || c.ClaimedAt != s1 || c.LastUsedAt != s1 {
			t.Fatalf("%+v", c)
		}
	})
	t.Run("empty repo is no change", func(t *testing.T) {
		c := Claim{LeaseID: "cbx_000000000001", RepoRoot: "/src/a"}
		if err := Bind(&c, true, "", false, t1); !errors.Is(err, ErrNoChange) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestListOutputJSON(t *testing.T) {
	b, err := json.Marshal(ListOutput{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"version":1,"source":"local-claims","claims":[],"problems":[]}`; got != want {
		t.Fatalf("empty envelope = %s, want %s", got, want)
	}

	c := Claim{
		LeaseID: "cbx_4f1c2a9be310", Revision: "r", Slug: "blue-lobster", Provider: "coder",
		CloudID: "alice/ws", WorkspaceID: "uuid", CoderURL: "http://coder", RepoRoot: "/src/app",
		ClaimedAt: "2026-08-20T09:12:44Z", LastUsedAt: "2026-08-20T09:40:02Z", IdleTimeoutSeconds: 1800,
		TargetOS: "linux", SSHHost: "h", SSHPort: 22, Labels: map[string]string{"secret": "x"},
	}
	b, err = json.Marshal(ListOutput{Claims: []View{c.View()}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":1,"source":"local-claims","claims":[{"leaseId":"cbx_4f1c2a9be310","slug":"blue-lobster","provider":"coder","repoRoot":"/src/app","targetOS":"linux","claimedAt":"2026-08-20T09:12:44Z","lastUsedAt":"2026-08-20T09:40:02Z","idleTimeoutSeconds":1800}],"problems":[]}`
	if string(b) != want {
		t.Fatalf("envelope =\n%s\nwant\n%s", b, want)
	}
	for _, leak := range []string{"uuid", "alice/ws", "sshHost", "secret", "revision"} {
		if strings.Contains(string(b), leak) {
			t.Errorf("view leaks %q", leak)
		}
	}

	b, _ = json.Marshal(ListOutput{Problems: []Problem{{File: "x.json", Code: CodeInvalidJSON, Message: "m"}}})
	if want := `{"version":1,"source":"local-claims","claims":[],"problems":[{"file":"x.json","code":"invalid_json","message":"m"}]}`; string(b) != want {
		t.Fatalf("problems envelope = %s", b)
	}
}
