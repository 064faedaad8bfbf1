package coder

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
)

func TestWhoAmICacheAcrossClients(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "coderv2")
	os.MkdirAll(cfg, 0o700)
	os.WriteFile(filepath.Join(cfg, "url"), []byte("https://a.example"), 0o600)
	os.WriteFile(filepath.Join(cfg, "session"), []byte("tok-1"), 0o600)
	env := map[string]string{"CODER_CONFIG_DIR": cfg}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	now := time.Unix(1_800_000_000, 0)
	cache := func() *WhoAmICache {
		return &WhoAmICache{Path: filepath.Join(dir, "state", "whoami.json"), Key: SessionKey(lookup, dir), TTL: time.Hour, Now: func() time.Time { return now }}
	}
	fake := execx.NewFake().On("coder whoami -o json", execx.Reply{Stdout: `[{"url":"https://a.example","username":"alice","user_id":"u1"}]`})
	ask := func() WhoAmI {
		t.Helper()
		w, err := (&Client{Runner: fake, Cache: cache()}).WhoAmI(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	calls := func() int { return len(fake.Calls()) }

	if w := ask(); w.Username != "alice" || calls() != 1 {
		t.Fatalf("first: %+v, %d calls", w, calls())
	}
	if w := ask(); w.Username != "alice" || calls() != 1 {
		t.Fatalf("cached: %+v, %d calls", w, calls())
	}
	b, _ := os.ReadFile(filepath.Join(dir, "state", "whoami.json"))
	if strings.Contains(string(b), "tok-1") {
		t.Fatalf("token stored in cache: %s", b)
	}
	if st, _ := os.Stat(filepath.Join(dir, "state", "whoami.json")); st.Mode().Perm() != 0o600 {
		t.Errorf("cache mode %v", st.Mode())
	}
	// A new login (session file changes) misses the cache.
	os.WriteFile(filepath.Join(cfg, "session"), []byte("tok-2"), 0o600)
	ask()
	if calls() != 2 {
		t.Errorf("new session did not miss the cache (%d calls)", calls())
	}
	// So does another deployment via env, and an expired entry.
	env["CODER_URL"] = "https://b.example"
	ask()
	if calls() != 3 {
		t.Errorf("CODER_URL change did not miss (%d calls)", calls())
	}
	now = now.Add(2 * time.Hour)
	ask()
	if calls() != 4 {
		t.Errorf("expired entry was used (%d calls)", calls())
	}
	// A failed whoami is never cached.
	bad := execx.NewFake().On("coder whoami -o json", execx.Reply{Stderr: "You are not logged in.", ExitCode: 1})
	env["CODER_URL"] = "https://c.example"
	if _, err := (&Client{Runner: bad, Cache: cache()}).WhoAmI(context.Background()); err == nil {
		t.Fatal("want error")
	}
	if _, ok := cache().Load(); ok {
		t.Error("failure was cached")
	}
}
