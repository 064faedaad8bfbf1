package coder

import (
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/provider"
)

// whoamiTTL bounds how long a cached `coder whoami` answer is reused for the
// same Coder session.
const whoamiTTL = 10 * time.Minute

func init() {
	provider.Register(ProviderName, New)
}

var _ provider.Provider = (*Provider)(nil)

// SettingsFrom is the Coder part of a resolved configuration.
func SettingsFrom(cfg *config.Config) Settings {
	return Settings{
		CLI:                  cfg.Coder.CLIPath,
		Template:             cfg.Coder.Template,
		Preset:               cfg.Coder.Preset,
		Prefix:               cfg.Coder.WorkspacePrefix,
		WorkRoot:             cfg.Coder.WorkRoot,
		Wait:                 cfg.Coder.Wait,
		UseParameterDefaults: cfg.Coder.UseParameterDefaults,
		Parameters:           cfg.Coder.Parameters,
		RichParameterFile:    cfg.Coder.RichParameterFile,
		DeleteOnRelease:      cfg.Coder.DeleteOnRelease,
		ReleaseOverride:      releaseOverride(cfg),
		IdleTimeout:          cfg.IdleTimeout,
		TTL:                  cfg.TTL,
	}
}

// releaseOverride is the release action given on the command line
// (--coder-delete-on-release[=false]); "" when the flag was not given. A
// config value (user or repo file, env) never overrides the action a claim
// recorded.
func releaseOverride(cfg *config.Config) string {
	if cfg.Source("coder.deleteOnRelease") != config.SourceFlag {
		return ""
	}
	if cfg.Coder.DeleteOnRelease {
		return ActionDelete
	}
	return ActionStop
}

// New builds the Coder provider from d (the provider registry's factory).
func New(d provider.Deps) (provider.Provider, error) {
	cfg := d.Config
	client := &Client{Runner: d.Runner, CLI: cfg.Coder.CLIPath}
	if d.Cached {
		home, _ := d.Env("HOME")
		client.Cache = &WhoAmICache{
			Path: filepath.Join(d.StateDir, "coder", "whoami.json"),
			Key:  SessionKey(d.Env, home),
			TTL:  whoamiTTL,
			Now:  d.Now,
		}
	}
	// Coder's build output (terraform plan/apply, ~40 lines a build) is
	// never streamed: the command renders its own progress from Events, and
	// the full output goes to a 0600 file per build, which a failed
	// build's error names.
	client.LogDir = filepath.Join(d.StateDir, "coder", "logs")
	st := d.Claims
	if st == nil {
		st = claims.New(d.StateDir)
	}
	return &Provider{
		Client:    client,
		Claims:    st,
		Settings:  SettingsFrom(cfg),
		ConfigDir: d.ConfigDir,
		Now:       d.Now,
		Events:    d.Events,
		Tunnels:   d.Tunnels,
	}, nil
}

// Name is the provider's canonical name.
func (p *Provider) Name() string { return ProviderName }

// ClaimMatches reports whether a claim is addressed by ident (lease ID,
// slug, workspace ref or bare workspace name), as Resolve matches it.
func (p *Provider) ClaimMatches(c claims.Claim, ident string) bool {
	return p.claimMatchesIdent(c, strings.TrimSpace(ident))
}

// ReleaseFlags repeat the delete-on-release setting this process would
// release l with, so a printed `crabbox stop` does the same.
func (p *Provider) ReleaseFlags(l *Lease) []string {
	return []string{"--target", "linux", "--coder-delete-on-release=" + strconv.FormatBool(p.Settings.DeleteOnRelease)}
}
