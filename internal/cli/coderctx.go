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
	"github.com/crabbox-dev/crabbox/internal/coder"
	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/iostreams"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// Readiness budget for a workspace to answer over SSH (spec §7.4).
const readyTimeout = 20 * time.Minute

// whoamiTTL bounds how long a cached `coder whoami` answer is reused for the
// same Coder session.
const whoamiTTL = 10 * time.Minute

// leaseCtx is what a lease-addressing command works with: the config, the
// Coder provider, and the process's SSH tunnels (one per workspace, D7).
type leaseCtx struct {
	f        *Factory
	cfg      *config.Config
	provider *coder.Provider
	repoRoot string

	mu       sync.Mutex
	sessions map[string]*sshx.Session
	progress *iostreams.Progress
}

// openLease loads config, checks the provider, and builds the Coder
// provider. Callers must defer lc.close().
func (f *Factory) openLease(cmd *cobra.Command) (*leaseCtx, error) {
	return f.openLeaseOpt(cmd, providerRequired, "")
}

// How a command without a configured provider finds one.
type providerFallback int

const (
	providerRequired  providerFallback = iota // usage error
	providerAssumed                           // coder (doctor checks the one provider there is)
	providerFromLease                         // the provider of the claim matching the lease identifier
	providerFromAll                           // the providers of the existing claims (list, cleanup)
)

// openLeaseOpt is openLease with a fallback for an unselected provider;
// ident is the lease identifier for providerFromLease.
func (f *Factory) openLeaseOpt(cmd *cobra.Command, fallback providerFallback, ident string) (*leaseCtx, error) {
	cfg, err := f.loadConfig(cmd)
	if err != nil {
		return nil, err
	}
	assumeCoder := fallback == providerAssumed
	if cfg.Provider == "" {
		switch fallback {
		case providerAssumed:
			cfg.Provider = "coder"
		case providerFromLease, providerFromAll:
			p, err := f.providerFromClaims(cfg, fallback == providerFromAll, ident)
			if err != nil {
				return nil, err
			}
			cfg.Provider = p
		}
	}
	switch cfg.Provider {
	case "coder":
	case "":
		return nil, usageErr("no provider selected; pass --provider coder, set CRABBOX_PROVIDER=coder, or put `provider: coder` in crabbox.yaml")
	default:
		return nil, usageErr("provider=%s is not supported by this command yet; use --provider coder", cfg.Provider)
	}
	lc := &leaseCtx{f: f, cfg: cfg, sessions: map[string]*sshx.Session{}}
	lc.repoRoot = f.repoRoot(cmd.Context())
	if lc.repoRoot == "" {
		// Outside a git repo the claim binds to the working directory.
		if wd, err := f.Getwd(); err == nil {
			lc.repoRoot = wd
		}
	}
	client := &coder.Client{Runner: f.Runner, CLI: cfg.Coder.CLIPath}
	if !assumeCoder { // doctor always asks Coder for real
		home, _ := f.Env("HOME")
		client.Cache = &coder.WhoAmICache{
			Path: filepath.Join(config.StateDir(f.Env), "coder", "whoami.json"),
			Key:  coder.SessionKey(f.Env, home),
			TTL:  whoamiTTL,
			Now:  f.Now,
		}
	}
	// Coder's build output (terraform plan/apply, ~40 lines a build) is
	// never streamed: crabbox prints its own progress lines (see event)
	// and keeps the full output in a 0600 file per build, which a failed
	// build's error names.
	client.LogDir = filepath.Join(config.StateDir(f.Env), "coder", "logs")
	lc.provider = &coder.Provider{
		Client: client,
		Claims: claims.New(config.StateDir(f.Env)),
		Settings: coder.Settings{
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
		},
		ConfigDir: config.ConfigDir(f.Env),
		Now:       f.Now,
		Events:    lc.event,
	}
	return lc, nil
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
		return coder.ActionDelete
	}
	return coder.ActionStop
}

// event renders provider events on stderr.
func (lc *leaseCtx) event(e coder.Event) {
	io := lc.f.IO
	switch e.Kind {
	case coder.EventProvisioning:
		l := e.Lease
		fmt.Fprintf(io.ErrOut, "provisioning provider=coder lease=%s slug=%s workspace=%s template=%s keep=%t\n",
			l.ID, dash(l.Slug), l.Workspace, lc.cfg.Coder.Template, l.Keep)
		lc.startStep("creating workspace " + l.Workspace)
	case coder.EventReusing:
		fmt.Fprintln(io.ErrOut, e.Message)
	case coder.EventStarting:
		fmt.Fprintf(io.ErrOut, "starting coder workspace %s (lease=%s)\n", e.Lease.Ref, e.Lease.ID)
		lc.startStep("starting workspace " + e.Lease.Workspace)
	case coder.EventWaiting:
		fmt.Fprintln(io.ErrOut, e.Message)
		lc.startStep("waiting for the build of workspace " + e.Lease.Workspace)
	case coder.EventReleasing:
		verb := "stopping"
		if e.Action == coder.ActionDelete {
			verb = "deleting"
		}
		lc.startStep(verb + " workspace " + e.Lease.Workspace)
	case coder.EventDone:
		lc.endProgress(e.Err)
	case coder.EventRollback:
		lc.endProgress(fmt.Errorf("failed"))
		fmt.Fprintln(io.ErrOut, e.Message)
	case coder.EventWarning:
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

// startStep is startProgress for a workspace build: off a terminal its
// start line is printed at once.
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

// session returns the process's one SSH tunnel to l's workspace (D7).
func (lc *leaseCtx) session(l *coder.Lease) (*sshx.Session, error) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	key := l.Target.Host + "\x00" + l.Target.KnownHostsFile
	if s, ok := lc.sessions[key]; ok {
		return s, nil
	}
	if err := sshx.EnsureKnownHostsDir(l.Target); err != nil {
		return nil, err
	}
	s := sshx.NewSession(lc.f.Runner, l.Target, sshx.SessionOptions{})
	lc.sessions[key] = s
	return s, nil
}

// ready is the coder.ReadyFunc: wait until the workspace answers the ready
// check over the process's tunnel, showing what is awaited.
func (lc *leaseCtx) ready(ctx context.Context, l *coder.Lease) error {
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
			lc.progress.Update("agent not answering yet: " + firstLine(lastErr.Error()))
		}
	})
	lc.endProgress(err)
	return err
}

// open is the coder ResolveRequest.Open hook: for a lease believed ready,
// only open the process's tunnel (no separate ready-check round trip).
func (lc *leaseCtx) open(ctx context.Context, l *coder.Lease) error {
	s, err := lc.session(l)
	if err != nil {
		return err
	}
	return s.Open(ctx)
}

// probe runs one bounded ready check (status/inspect).
func (lc *leaseCtx) probe(ctx context.Context, l *coder.Lease, timeout time.Duration) bool {
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
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for _, s := range lc.sessions {
		if err := s.Close(); err != nil {
			fmt.Fprintf(lc.f.IO.ErrOut, "warning: closing ssh tunnel: %v\n", err)
		}
	}
	lc.sessions = map[string]*sshx.Session{}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
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
func (f *Factory) providerFromClaims(cfg *config.Config, all bool, ident string) (string, error) {
	list, _, err := claims.New(config.StateDir(f.Env)).List()
	if err != nil {
		return "", nil // unreadable claims: same as none
	}
	seen := map[string]bool{}
	var names []string
	for _, c := range list {
		if c.Provider == "" || (!all && !coder.ClaimMatchesIdent(c, ident, cfg.Coder.WorkspacePrefix)) {
			continue
		}
		if !seen[c.Provider] {
			seen[c.Provider] = true
			names = append(names, c.Provider)
		}
	}
	if len(names) == 0 {
		// A released workspace (no claim left) is still crabbox's.
		recs, _ := claims.New(config.StateDir(f.Env)).ListReleased()
		for _, r := range recs {
			if all || r.LeaseID == ident || strings.EqualFold(r.Workspace, ident) || strings.EqualFold(r.Ref, ident) ||
				(lease.NormalizeSlug(ident) != "" && lease.NormalizeSlug(r.Slug) == lease.NormalizeSlug(ident)) {
				return coder.ProviderName, nil
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
