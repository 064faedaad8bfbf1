package cli

// The one file of the CLI that knows which providers exist: importing
// provider/all registers them; everything else works on provider.Provider.

import (
	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/provider"
	_ "github.com/crabbox-dev/crabbox/internal/provider/all" // registers coder, ssh
)

// newProvider builds the provider name for cfg with the command's shared
// services (claims, tunnels, events).
func (lc *leaseCtx) newProvider(name string, cached bool) (provider.Provider, error) {
	f := lc.f
	return provider.New(name, provider.Deps{
		Config:    lc.cfg,
		Runner:    f.Runner,
		Claims:    lc.claims,
		StateDir:  config.StateDir(f.Env),
		ConfigDir: config.ConfigDir(f.Env),
		Env:       f.Env,
		Now:       f.Now,
		Events:    lc.event,
		Tunnels:   lc.tunnels,
		Cached:    cached,
	})
}
