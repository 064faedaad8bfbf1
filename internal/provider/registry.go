package provider

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// Deps is what a provider is built from: the resolved configuration and
// the process's shared services.
type Deps struct {
	Config    *config.Config
	Runner    execx.Runner
	Claims    *claims.Store
	StateDir  string
	ConfigDir string
	Env       func(string) (string, bool)
	Now       func() time.Time
	Events    func(Event)
	// Tunnels is the process's pool of ssh sessions (shared with the
	// command that built the provider), for providers that talk to a
	// machine themselves (the SSH provider's owner checks and doctor).
	Tunnels *sshx.Pool
	// Cached allows answers cached across processes (e.g. Coder's whoami);
	// doctor turns it off to ask for real.
	Cached bool
}

// Factory builds a provider.
type Factory func(Deps) (Provider, error)

var (
	mu        sync.RWMutex
	factories = map[string]Factory{}
	aliases   = map[string]string{}
)

// Register makes a provider available under name and its aliases. It is
// called from the provider package's init; a duplicate name panics.
func Register(name string, f Factory, alias ...string) {
	mu.Lock()
	defer mu.Unlock()
	for _, n := range append([]string{name}, alias...) {
		if _, dup := aliases[n]; dup {
			panic("provider: " + n + " registered twice")
		}
		aliases[n] = name
	}
	factories[name] = f
}

// Canonical returns the registered name for name or an alias ("" when
// unknown).
func Canonical(name string) string {
	mu.RLock()
	defer mu.RUnlock()
	return aliases[strings.ToLower(strings.TrimSpace(name))]
}

// Names lists the registered canonical names, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(factories))
	for n := range factories {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// New builds the provider registered as name (or an alias).
func New(name string, d Deps) (Provider, error) {
	canon := Canonical(name)
	mu.RLock()
	f := factories[canon]
	mu.RUnlock()
	if f == nil {
		return nil, fmt.Errorf("unknown provider %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return f(d)
}
