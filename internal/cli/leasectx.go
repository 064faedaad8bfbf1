package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/iostreams"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/owner"
	"github.com/crabbox-dev/crabbox/internal/provider"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// Readiness budget for a machine to answer over SSH.
const readyTimeout = 20 * time.Minute

// leaseCtx is what a lease-addressing command works with: the config, the
// provider, the local claims, the owner check and the process's SSH
// tunnels (one per target, shared by every ssh and rsync).
type leaseCtx struct {
	f        *Factory
	cfg      *config.Config
	provider provider.Provider
	repoRoot string
	claims   *claims.Store
	tunnels  *sshx.Pool
	owner    *owner.Checker

	mu       sync.Mutex
	progress *iostreams.Progress
}

// openLease loads config, checks the provider, and builds it. Callers
// must defer lc.close().
func (f *Factory) openLease(cmd *cobra.Command) (*leaseCtx, error) {
	return f.openLeaseOpt(cmd, providerRequired, "")
}

// How a command without a configured provider finds one.
type providerFallback int

const (
	providerRequired  providerFallback = iota // usage error
	providerAssumed                           // coder (doctor checks the default provider)
	providerFromLease                         // the provider of the claim matching the lease identifier
	providerFromAll                           // the providers of the existing claims (list, cleanup)
)

// openLeaseOpt is openLease with a fallback for an unselected provider;
// ident is the lease identifier for providerFromLease.
func (f *Factory) openLeaseOpt(cmd *cobra.Command, fallback providerFallback, ident string) (*leaseCtx, error) {
	return f.openLeaseWith(cmd, fallback, ident, true)
}

// openLeaseWith is openLeaseOpt; persist=false keeps the process's tunnels
// to itself even when ssh.persist is set (crabbox tunnel: its forwards
// must end with it).
func (f *Factory) openLeaseWith(cmd *cobra.Command, fallback providerFallback, ident string, persist bool) (*leaseCtx, error) {
	cfg, err := f.loadConfig(cmd)
	if err != nil {
		return nil, err
	}
	stateDir := config.StateDir(f.Env)
	lc := &leaseCtx{f: f, cfg: cfg, claims: claims.New(stateDir), tunnels: sshx.NewPool(f.Runner, sessionOptions(cfg, stateDir, persist))}
	lc.owner = &owner.Checker{StateDir: stateDir, Claims: lc.claims, Now: f.Now,
		Warn: func(msg string) { fmt.Fprintf(f.IO.ErrOut, "warning: %s\n", msg) }}
	if cfg.Provider == "" {
		switch fallback {
		case providerAssumed:
			cfg.Provider = "coder"
		case providerFromLease, providerFromAll:
			p, err := lc.providerFromClaims(fallback == providerFromAll, ident)
			if err != nil {
				return nil, err
			}
			cfg.Provider = p
		}
	}
	if cfg.Provider == "" {
		return nil, usageErr("no provider selected; pass --provider %s, set CRABBOX_PROVIDER, or put `provider: coder` in crabbox.yaml",
			strings.Join(provider.Names(), "|"))
	}
	if provider.Canonical(cfg.Provider) == "" {
		return nil, usageErr("provider=%s is not known; use one of: %s", cfg.Provider, strings.Join(provider.Names(), ", "))
	}
	lc.repoRoot = f.repoRoot(cmd.Context())
	if lc.repoRoot == "" {
		// Outside a git repo the claim binds to the working directory.
		if wd, err := f.Getwd(); err == nil {
			lc.repoRoot = wd
		}
	}
	// doctor always asks the provider for real (no cached answers).
	lc.provider, err = lc.newProvider(cfg.Provider, fallback != providerAssumed)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	return lc, nil
}

// sessionOptions are the tunnels' options: with persist and ssh.persist
// set, a lease's control master outlives the process.
func sessionOptions(cfg *config.Config, stateDir string, persist bool) sshx.SessionOptions {
	so := sshx.SessionOptions{}
	if persist && cfg.SSH.Persist > 0 {
		so.Persist, so.MasterDir = cfg.SSH.Persist, filepath.Join(stateDir, "ssh", "masters")
	}
	return so
}

// event renders provider events on stderr.
func (lc *leaseCtx) event(e provider.Event) {
	io := lc.f.IO
	name := lc.cfg.Provider
	if e.Lease != nil && e.Lease.Provider != "" {
		name = e.Lease.Provider
	}
	switch e.Kind {
	case provider.EventProvisioning:
		l := e.Lease
		fmt.Fprintf(io.ErrOut, "provisioning provider=%s lease=%s slug=%s workspace=%s template=%s keep=%t\n",
			name, l.ID, dash(l.Slug), l.Workspace, dash(l.Template), l.Keep)
		lc.startStep("creating workspace " + l.Workspace)
	case provider.EventReusing:
		fmt.Fprintln(io.ErrOut, e.Message)
	case provider.EventStarting:
		fmt.Fprintf(io.ErrOut, "starting %s workspace %s (lease=%s)\n", name, e.Lease.Ref, e.Lease.ID)
		lc.startStep("starting workspace " + e.Lease.Workspace)
	case provider.EventWaiting:
		fmt.Fprintln(io.ErrOut, e.Message)
		lc.startStep("waiting for the build of workspace " + e.Lease.Workspace)
	case provider.EventReleasing:
		switch e.Action {
		case provider.ActionDelete:
			lc.startStep("deleting workspace " + e.Lease.Workspace)
		case provider.ActionForget:
			lc.startStep("releasing host " + e.Lease.Workspace)
		default:
			lc.startStep("stopping workspace " + e.Lease.Workspace)
		}
	case provider.EventDone:
		lc.endProgress(e.Err)
	case provider.EventRollback:
		lc.endProgress(fmt.Errorf("failed"))
		fmt.Fprintln(io.ErrOut, e.Message)
	case provider.EventWarning:
		fmt.Fprintf(io.ErrOut, "warning: %s\n", e.Message)
	}
}

func (lc *leaseCtx) startProgress(label string) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.progress != nil {
		lc.progress.Done(nil)
	}
	lc.progress = lc.f.IO.StartProgress(label)
}

// startStep is startProgress for a machine build: off a terminal its start
// line is printed at once.
func (lc *leaseCtx) startStep(label string) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.progress != nil {
		lc.progress.Done(nil)
	}
	lc.progress = lc.f.IO.StartStep(label)
}

func (lc *leaseCtx) endProgress(err error) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.progress != nil {
		lc.progress.Done(err)
		lc.progress = nil
	}
}

// session returns the process's one SSH tunnel to l's machine.
func (lc *leaseCtx) session(l *provider.Lease) (*sshx.Session, error) {
	return lc.tunnels.Get(l.Target)
}

// ready is the provider.ReadyFunc: wait until the machine answers the
// ready check over the process's tunnel, showing what is awaited.
func (lc *leaseCtx) ready(ctx context.Context, l *provider.Lease) error {
	lc.endProgress(nil)
	s, err := lc.session(l)
	if err != nil {
		return err
	}
	lc.startProgress("waiting for SSH on " + l.Workspace)
	err = s.WaitReady(ctx, readyTimeout, func(elapsed time.Duration, lastErr error) {
		lc.mu.Lock()
		defer lc.mu.Unlock()
		if lc.progress != nil && lastErr != nil {
			lc.progress.Update("agent not answering yet: " + execx.FirstLine(lastErr.Error()))
		}
	})
	lc.endProgress(err)
	return err
}

// open is the ResolveRequest.Open hook: for a lease believed ready, only
// open the process's tunnel (no separate ready-check round trip).
func (lc *leaseCtx) open(ctx context.Context, l *provider.Lease) error {
	s, err := lc.session(l)
	if err != nil {
		return err
	}
	return s.Open(ctx)
}

// probe runs one bounded ready check (status/inspect).
func (lc *leaseCtx) probe(ctx context.Context, l *provider.Lease, timeout time.Duration) bool {
	s, err := lc.session(l)
	if err != nil {
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	code, err := s.Run(pctx, l.Target.ReadyCheck, nil, nil, nil)
	return err == nil && code == 0
}

// close tears down every tunnel the process opened.
func (lc *leaseCtx) close() {
	lc.endProgress(nil)
	if err := lc.tunnels.Close(); err != nil {
		fmt.Fprintf(lc.f.IO.ErrOut, "warning: closing ssh tunnel: %v\n", err)
	}
}

// openNamedLease is the preamble of the commands that address one lease:
// the identifier (--id or the one argument), then openLease. With no
// provider configured, the provider of the claim matching the identifier
// is used.
func (f *Factory) openNamedLease(cmd *cobra.Command, id string, args []string) (*leaseCtx, string, error) {
	ident, err := leaseIdent(id, args)
	if err != nil {
		return nil, "", err
	}
	lc, err := f.openLeaseOpt(cmd, providerFromLease, ident)
	if err != nil {
		return nil, "", err
	}
	return lc, ident, nil
}

// providerFromClaims is the provider recorded by this machine's claims: of
// the claims matching ident (all claims with all). No matching claim
// leaves the provider unselected (the caller's usage error follows);
// claims naming different providers are a usage error naming them.
func (lc *leaseCtx) providerFromClaims(all bool, ident string) (string, error) {
	list, _, err := lc.claims.List()
	if err != nil {
		return "", nil // unreadable claims: same as none
	}
	seen := map[string]bool{}
	built := map[string]provider.Provider{}
	var names []string
	for _, c := range list {
		name := provider.Canonical(c.Provider)
		if name == "" {
			name = c.Provider // unknown here: named, never acted on
		}
		if name == "" {
			continue
		}
		if !all {
			p, ok := built[name]
			if !ok {
				p, _ = lc.newProvider(name, true)
				built[name] = p
			}
			if p == nil || !p.ClaimMatches(c, ident) {
				continue
			}
		}
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		// A released machine (no claim left) is still crabbox's.
		recs, _ := lc.claims.ListReleased()
		for _, r := range recs {
			if all || r.LeaseID == ident || strings.EqualFold(r.Workspace, ident) || strings.EqualFold(r.Ref, ident) ||
				(lease.NormalizeSlug(ident) != "" && lease.NormalizeSlug(r.Slug) == lease.NormalizeSlug(ident)) {
				return releasedProvider(r), nil
			}
		}
	}
	switch len(names) {
	case 0:
		return "", nil
	case 1:
		return names[0], nil
	}
	sort.Strings(names)
	return "", usageErr("no provider selected, and the local claims name several (%s); pass --provider", strings.Join(names, ", "))
}

// releasedProvider is the provider of a released record (only Coder
// releases keep one).
func releasedProvider(r claims.Released) string {
	if p := provider.Canonical(r.Provider); p != "" {
		return p
	}
	return "coder"
}

// slugFlag validates --slug when it was given ("" otherwise).
func slugFlag(cmd *cobra.Command, raw string) (string, error) {
	if !cmd.Flags().Changed("slug") {
		return "", nil
	}
	return lease.ValidateSlug(raw)
}

// leaseIdent returns the lease named by --id or the one positional arg.
func leaseIdent(id string, args []string) (string, error) {
	switch {
	case id != "" && len(args) > 0:
		return "", usageErr("give the lease either as --id or as an argument, not both")
	case len(args) > 1:
		return "", usageErr("expected one lease (id, slug, workspace or owner/workspace), got %d", len(args))
	case len(args) == 1:
		return args[0], nil
	case id != "":
		return id, nil
	}
	return "", usageErr("which lease? pass a lease ID, slug, workspace name or owner/workspace (as --id or an argument); `crabbox list` shows them")
}

// prepareLease makes the lease ident names ready for this command (start
// a stopped machine, wait for SSH, claim it for the repo) and records this
// machine as its owner. keepTunnel opens the process's tunnel instead of a
// separate ready check when the lease is believed ready (the command goes
// on using it). next renders the command that takes the lease over.
func (lc *leaseCtx) prepareLease(ctx context.Context, ident string, reclaim, keepTunnel bool, next func(ident string) string) (*provider.Lease, *sshx.Session, error) {
	req := provider.ResolveRequest{Ident: ident, Mode: provider.Prepare, RepoRoot: lc.repoRoot, Reclaim: reclaim, Ready: lc.ready}
	if keepTunnel {
		req.Open = lc.open
	}
	l, err := lc.provider.Resolve(ctx, req)
	lc.endProgress(err)
	if err != nil {
		return nil, nil, err
	}
	sess, err := lc.session(l)
	if err != nil {
		return nil, nil, err
	}
	if err := lc.claimOwner(ctx, sess, l, reclaim, next); err != nil {
		return nil, nil, err
	}
	return l, sess, nil
}

// claimOwner records this machine as l's owner before a command uses it
// (one round trip; see owner.Checker.Claim), unless the provider keeps the
// owner record itself and already did.
func (lc *leaseCtx) claimOwner(ctx context.Context, sess *sshx.Session, l *provider.Lease, reclaim bool, next func(ident string) string) error {
	if provider.KeepsOwnerRecord(lc.provider) {
		return nil
	}
	return lc.owner.Claim(ctx, sess, l, reclaim, next)
}
