package syncer

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/remotecmd"
)

func loadConfig(t *testing.T, yaml string, env map[string]string) *config.Config {
	t.Helper()
	home := t.TempDir()
	m := map[string]string{"HOME": home}
	for k, v := range env {
		m[k] = v
	}
	if yaml != "" {
		p := filepath.Join(home, ".config", "crabbox", "config.yaml")
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(config.LoadOptions{Env: config.MapEnv(m)})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestOptionsFromDefaults: the config defaults are DefaultOptions (with
// the git seed on, as sync.gitSeed defaults) and the leftover reaper as
// the prepare hook, less what only a run sets.
func TestOptionsFromDefaults(t *testing.T) {
	got := OptionsFrom(loadConfig(t, "", nil))
	want := DefaultOptions()
	want.RSync = ""
	want.GitSeed = true
	want.Exclude = []string{}
	want.PrepareHook = remotecmd.ReapLeftovers
	if !reflect.DeepEqual(got, want) {
		t.Errorf("OptionsFrom(defaults)\n got %+v\nwant %+v", got, want)
	}
}

// TestOptionsFromEveryKey: each sync key reaches its option.
func TestOptionsFromEveryKey(t *testing.T) {
	cfg := loadConfig(t, `sync:
  delete: false
  checksum: true
  gitSeed: false
  fingerprint: false
  timeout: 2m
  warnFiles: 10
  warnBytes: 20
  failFiles: 30
  failBytes: 40
  allowLarge: true
  exclude: ["*.log", "!keep.log"]
`, map[string]string{"CRABBOX_ALLOW_MASS_DELETIONS": "1"})
	want := Options{
		Exclude: []string{"*.log", "!keep.log"}, Delete: false, Checksum: true, Fingerprint: false, GitSeed: false,
		WarnFiles: 10, FailFiles: 30, WarnBytes: 20, FailBytes: 40, AllowLarge: true, AllowMassDeletions: true,
		Timeout: 2 * time.Minute, PrepareHook: remotecmd.ReapLeftovers,
	}
	if got := OptionsFrom(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("OptionsFrom\n got %+v\nwant %+v", got, want)
	}
}
