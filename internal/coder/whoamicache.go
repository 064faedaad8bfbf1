package coder

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/crabbox-dev/crabbox/internal/fsx"
)

// WhoAmICache remembers `coder whoami` across crabbox processes. Each
// `coder` call costs ~0.2 s of CPU, and whoami's answer is fully determined
// by the CLI's session: the cache is keyed by a SHA-256 over the session
// (CODER_URL, CODER_SESSION_TOKEN, and the CLI config dir's url and session
// files), so a new login, another deployment or another token misses it.
// The token itself is never stored: only the hash of everything together.
type WhoAmICache struct {
	Path string        // cache file (0600)
	Key  string        // SessionKey(...)
	TTL  time.Duration // entries older than this are ignored
	Now  func() time.Time
}

type whoamiEntry struct {
	Key      string    `json:"key"`
	URL      string    `json:"url"`
	Username string    `json:"username"`
	UserID   string    `json:"userId"`
	At       time.Time `json:"at"`
}

// SessionKey hashes what decides who the coder CLI is logged in as. env
// looks up environment variables; home is the user's home directory.
func SessionKey(env func(string) (string, bool), home string) string {
	h := sha256.New()
	get := func(k string) string { v, _ := env(k); return v }
	dir := get("CODER_CONFIG_DIR")
	if dir == "" {
		if x := get("XDG_CONFIG_HOME"); x != "" {
			dir = filepath.Join(x, "coderv2")
		} else if home != "" {
			dir = filepath.Join(home, ".config", "coderv2")
		}
	}
	for _, part := range []string{get("CODER_URL"), get("CODER_SESSION_TOKEN"), dir} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	for _, f := range []string{"url", "session"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			b = []byte("\x00missing")
		}
		h.Write(b)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (c *WhoAmICache) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Load returns the cached answer for Key when it is fresh.
func (c *WhoAmICache) Load() (WhoAmI, bool) {
	b, err := os.ReadFile(c.Path)
	if err != nil {
		return WhoAmI{}, false
	}
	var e whoamiEntry
	if json.Unmarshal(b, &e) != nil || e.Key != c.Key || e.Username == "" {
		return WhoAmI{}, false
	}
	if age := c.now().Sub(e.At); age < 0 || age > c.TTL {
		return WhoAmI{}, false
	}
	return WhoAmI{URL: e.URL, Username: e.Username, UserID: e.UserID}, true
}

// Store records w for Key (best effort: a cache that cannot be written is
// just a cache miss next time).
func (c *WhoAmICache) Store(w WhoAmI) {
	b, err := json.Marshal(whoamiEntry{Key: c.Key, URL: w.URL, Username: w.Username, UserID: w.UserID, At: c.now().UTC()})
	if err != nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(c.Path), 0o700); err != nil {
		return
	}
	_ = fsx.WriteFileAtomic(c.Path, b, 0o600)
}
