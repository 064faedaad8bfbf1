package sshx

import (
	"errors"
	"sync"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/lease"
)

// Pool holds a process's tunnels: one Session per target, shared by every
// ssh and rsync the process runs against it. Safe for concurrent use.
type Pool struct {
	r    execx.Runner
	opts SessionOptions

	mu       sync.Mutex
	sessions map[string]*Session
}

// NewPool returns an empty pool whose sessions use r and o.
func NewPool(r execx.Runner, o SessionOptions) *Pool {
	return &Pool{r: r, opts: o, sessions: map[string]*Session{}}
}

func poolKey(t lease.Target) string {
	return t.User + "\x00" + t.Host + "\x00" + t.KnownHostsFile + "\x00" + t.ProxyCommand + "\x00" + t.IdentityFile + "\x00" + t.ControlKey
}

// Get returns the pool's session for t, creating it (and t's known_hosts
// directory) on first use. Nothing is started until the session is used.
func (p *Pool) Get(t lease.Target) (*Session, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := poolKey(t)
	if s, ok := p.sessions[k]; ok {
		return s, nil
	}
	if err := EnsureKnownHostsDir(t); err != nil {
		return nil, err
	}
	s := NewSession(p.r, t, p.opts)
	p.sessions[k] = s
	return s, nil
}

// Persistent reports whether the pool's sessions keep persistent masters
// (SessionOptions.Persist and MasterDir set).
func (p *Pool) Persistent() bool { return p.opts.Persist > 0 && p.opts.MasterDir != "" }

// Shutdown ends t's control master, a persistent one included (see
// Session.Shutdown), whether or not this process used it.
func (p *Pool) Shutdown(t lease.Target) error {
	s, err := p.Get(t)
	if err != nil {
		return err
	}
	return s.Shutdown()
}

// Close ends every session the pool started (a persistent master is only
// let go: it ends by itself after SessionOptions.Persist) and forgets them.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, s := range p.sessions {
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	p.sessions = map[string]*Session{}
	return errors.Join(errs...)
}
