// Package sshhost is the "ssh" provider: existing Linux hosts reached over
// plain SSH, listed in the configuration (ssh.hosts). Nothing is
// provisioned. A lease claims one host exclusively: a local claim, taken
// under the claims store's allocation lock, plus the owner record in the
// host's work root (internal/owner), so other state dirs see it busy.
// Release drops both and never shuts a host down or deletes anything but,
// when asked, crabbox's own work dir of the lease.
package sshhost

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/owner"
	"github.com/crabbox-dev/crabbox/internal/provider"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// ProviderName is the canonical provider name recorded in claims.
const ProviderName = "ssh"

// ServerType is every SSH lease's ServerType.
const ServerType = "ssh-host"

// Lease states.
const (
	// StateReady: claimed here and just verified over SSH (acquire, prepare).
	StateReady = "ready"
	// StateClaimed: claimed here (not checked remotely).
	StateClaimed = "claimed"
	// StateFree: configured, with no claim here (other machines are not
	// asked).
	StateFree = "free"
	// StateUnconfigured: claimed here, but the host is no longer in
	// ssh.hosts; it can only be released.
	StateUnconfigured = "unconfigured"
)

// The lease lifecycle's types are the provider-neutral ones.
type (
	Lease           = provider.Lease
	Event           = provider.Event
	AcquireRequest  = provider.AcquireRequest
	ResolveRequest  = provider.ResolveRequest
	ReleaseRequest  = provider.ReleaseRequest
	ReleaseResult   = provider.ReleaseResult
	CleanupRequest  = provider.CleanupRequest
	CleanupDecision = provider.CleanupDecision
	Check           = provider.Check
	DoctorReport    = provider.DoctorReport
)

// Provider runs the lease lifecycle over the configured hosts.
type Provider struct {
	Settings  Settings
	Claims    *claims.Store
	StateDir  string
	ConfigDir string // crabbox's config dir (TOFU known_hosts live under it)
	// Runner runs ssh when Tunnels is nil (then every round trip has its
	// own session, closed after it).
	Runner execx.Runner
	// Tunnels is the process's session pool, shared with the command.
	Tunnels *sshx.Pool
	Now     func() time.Time
	Events  func(Event)
}

var _ provider.Provider = (*Provider)(nil)

func init() {
	provider.Register(ProviderName, New, "static", "static-ssh")
}

// New builds the ssh provider from d (the provider registry's factory).
func New(d provider.Deps) (provider.Provider, error) {
	st := d.Claims
	if st == nil {
		st = claims.New(d.StateDir)
	}
	r := d.Runner
	if r == nil {
		r = execx.OS{}
	}
	return &Provider{
		Settings:  SettingsFrom(d.Config),
		Claims:    st,
		StateDir:  d.StateDir,
		ConfigDir: d.ConfigDir,
		Runner:    r,
		Tunnels:   d.Tunnels,
		Now:       d.Now,
		Events:    d.Events,
	}, nil
}

// Name is the provider's canonical name.
func (p *Provider) Name() string { return ProviderName }

// KeepsOwnerRecord: Acquire, Resolve (Prepare) and Release read and write
// the owner record themselves, under the host's owner lock.
func (p *Provider) KeepsOwnerRecord() bool { return true }

func (p *Provider) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Provider) emit(e Event) {
	if p.Events != nil {
		p.Events(e)
	}
}

func (p *Provider) warnf(format string, args ...any) {
	p.emit(Event{Kind: provider.EventWarning, Message: fmt.Sprintf(format, args...)})
}

func (p *Provider) owners() *owner.Checker {
	return &owner.Checker{StateDir: p.StateDir, Claims: p.Claims, Now: p.now,
		Warn: func(msg string) { p.warnf("%s", msg) }}
}

// ClaimMatches reports whether a claim is addressed by ident: its lease
// ID, slug, host name, user@host:port or host:port.
func (p *Provider) ClaimMatches(c claims.Claim, ident string) bool {
	return claimMatches(c, strings.TrimSpace(ident))
}

func claimMatches(c claims.Claim, ident string) bool {
	if ident == "" {
		return false
	}
	if c.LeaseID == ident {
		return true
	}
	if n := lease.NormalizeSlug(ident); n != "" && lease.NormalizeSlug(c.Slug) == n {
		return true
	}
	for _, name := range []string{c.CloudID, c.WorkspaceID, claimHostPort(c)} {
		if name != "" && strings.EqualFold(name, ident) {
			return true
		}
	}
	return false
}

func claimHostPort(c claims.Claim) string {
	if c.SSHHost == "" {
		return ""
	}
	return endpoint("", c.SSHHost, claimPort(c))
}

func claimPort(c claims.Claim) int {
	if c.SSHPort > 0 {
		return c.SSHPort
	}
	return 22
}

// hostMatches reports whether ident names h: its name, user@host:port or
// host:port (any case).
func hostMatches(h Host, ident string) bool {
	for _, name := range []string{h.Name, h.Endpoint(), endpoint("", h.Host, h.Port)} {
		if strings.EqualFold(name, ident) {
			return true
		}
	}
	return false
}

// ReleaseFlags: --ssh-clean-workdir when releasing l removes its work dir,
// so a printed `crabbox stop` does the same; else nil.
func (p *Provider) ReleaseFlags(l *Lease) []string {
	if p.cleanWorkdir(l) {
		return []string{"--ssh-clean-workdir"}
	}
	return nil
}

// cleanWorkdir says whether releasing l removes its work dir: the command
// line's --ssh-clean-workdir[=false] when given, else what l's claim
// recorded, else the setting.
func (p *Provider) cleanWorkdir(l *Lease) bool {
	if o := p.Settings.CleanOverride; o != nil {
		return *o
	}
	if l != nil && l.Claim != nil {
		if v, ok := l.Claim.Labels["ssh_clean_workdir"]; ok {
			return v == "true"
		}
	}
	return p.Settings.CleanWorkdir
}

// ---- claims ---------------------------------------------------------------

// sshClaims are this state dir's ssh claims.
func (p *Provider) sshClaims() ([]claims.Claim, error) {
	list, _, err := p.Claims.List()
	if err != nil {
		return nil, err
	}
	var out []claims.Claim
	for _, c := range list {
		if c.Provider == ProviderName {
			out = append(out, c)
		}
	}
	return out, nil
}

// claimForHost is the claim bound to h (by user@host:port), or nil.
func claimForHost(h Host, cs []claims.Claim) *claims.Claim {
	for i := range cs {
		if strings.EqualFold(cs[i].WorkspaceID, h.Endpoint()) {
			return &cs[i]
		}
	}
	return nil
}

// hostForClaim is the configured host a claim is bound to, or nil.
func (p *Provider) hostForClaim(c claims.Claim) *Host {
	for i := range p.Settings.Hosts {
		if strings.EqualFold(p.Settings.Hosts[i].Endpoint(), c.WorkspaceID) {
			return &p.Settings.Hosts[i]
		}
	}
	return nil
}

// hostFromClaim rebuilds the host a claim recorded (for a host no longer
// configured: it can still be released).
func hostFromClaim(c claims.Claim) Host {
	l := c.Labels
	return Host{
		Name: c.CloudID, Host: c.SSHHost, User: l["ssh_user"], Port: claimPort(c),
		IdentityFile: l["ssh_identity_file"], KnownHostsFile: l["ssh_known_hosts_file"], WorkRoot: l["work_root"],
	}
}

// ---- leases -----------------------------------------------------------------

// target is the SSH endpoint of h with workRoot as its work root.
func (p *Provider) target(h Host, workRoot string) lease.Target {
	t := lease.Target{
		User: h.User, Host: h.Host, Port: h.Port,
		IdentityFile: h.IdentityFile,
		WorkRoot:     workRoot,
		ReadyCheck:   ReadyCheck(workRoot),
	}
	if h.KnownHostsFile != "" {
		t.KnownHostsFile, t.StrictHostKeys = h.KnownHostsFile, true
	} else {
		t.KnownHostsFile = TOFUKnownHostsFile(p.ConfigDir, h.Host, h.Port)
	}
	return t
}

// buildLease combines a configured host (nil: no longer configured) and a
// claim (nil: the host is free here).
func (p *Provider) buildLease(h *Host, c *claims.Claim) *Lease {
	var host Host
	switch {
	case h != nil:
		host = *h
	case c != nil:
		host = hostFromClaim(*c)
	}
	l := &Lease{
		Provider: ProviderName, ServerType: ServerType,
		Workspace: host.Name, Ref: host.Name, WorkspaceID: host.Endpoint(), Owner: host.User,
		Labels: map[string]string{},
	}
	workRoot := host.WorkRoot
	if c != nil {
		for k, v := range c.Labels {
			l.Labels[k] = v
		}
		cc := *c
		l.Claim, l.Owned = &cc, true
		l.ID, l.Slug = c.LeaseID, c.Slug
		if wr := c.Labels["work_root"]; wr != "" {
			workRoot = wr // the owner record and work dirs live where the lease began
		}
		if t, err := time.Parse(time.RFC3339, c.LastUsedAt); err == nil {
			l.LastTouchedAt = t
		}
		l.IdleTimeout = time.Duration(c.IdleTimeoutSeconds) * time.Second
	}
	switch {
	case h == nil:
		l.State = StateUnconfigured
	case c == nil:
		l.State, l.Ready = StateFree, true
	case c.Labels["state"] == StateReady:
		l.State, l.Ready = StateReady, true
	default:
		l.State, l.Ready = StateClaimed, true
	}
	l.Keep = strings.EqualFold(l.Labels["keep"], "true")
	l.Labels["provider"] = ProviderName
	l.Labels["lease"] = l.ID
	if l.Slug != "" {
		l.Labels["slug"] = l.Slug
	}
	l.Labels["ssh_host_name"] = host.Name
	l.Labels["ssh_endpoint"] = host.Endpoint()
	l.Labels["work_root"] = workRoot
	l.Labels["state"] = l.State
	l.Labels["keep"] = strconv.FormatBool(l.Keep)
	l.CreatedAt = parseUnixLabel(l.Labels["created_at"])
	l.ExpiresAt = parseUnixLabel(l.Labels["expires_at"])
	if host.Host != "" {
		l.Target = p.target(host, workRoot)
	}
	return l
}

func unixLabel(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

func parseUnixLabel(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	return time.Unix(n, 0).UTC()
}

// leaseLabels are the labels a new claim records.
func (p *Provider) leaseLabels(id, slug string, h Host, keep bool, now time.Time) map[string]string {
	t := p.target(h, h.WorkRoot)
	l := map[string]string{
		"crabbox":              "true",
		"created_by":           "crabbox",
		"provider":             ProviderName,
		"lease":                id,
		"slug":                 slug,
		"keep":                 strconv.FormatBool(keep),
		"ssh_host_name":        h.Name,
		"ssh_endpoint":         h.Endpoint(),
		"ssh_user":             h.User,
		"ssh_identity_file":    h.IdentityFile,
		"ssh_known_hosts_file": h.KnownHostsFile,
		"ssh_strict_host_keys": strconv.FormatBool(t.StrictHostKeys),
		"ssh_clean_workdir":    strconv.FormatBool(p.Settings.CleanWorkdir),
		"work_root":            h.WorkRoot,
		"state":                StateClaimed,
		"target":               "linux",
		"created_at":           unixLabel(now),
		"last_touched_at":      unixLabel(now),
	}
	if o := p.Settings.CleanOverride; o != nil {
		l["ssh_clean_workdir"] = strconv.FormatBool(*o)
	}
	if p.Settings.IdleTimeout > 0 {
		secs := strconv.FormatInt(int64(p.Settings.IdleTimeout/time.Second), 10)
		l["idle_timeout"], l["idle_timeout_secs"] = secs, secs
	}
	if p.Settings.TTL > 0 {
		l["ttl_secs"] = strconv.FormatInt(int64(p.Settings.TTL/time.Second), 10)
		l["expires_at"] = unixLabel(now.Add(p.Settings.TTL))
	}
	return l
}

// recordClaim fills a claim for host h.
func (p *Provider) recordClaim(c *claims.Claim, id, slug string, h Host, keep bool, now time.Time) {
	c.Slug, c.Provider = slug, ProviderName
	c.CloudID, c.WorkspaceID = h.Name, h.Endpoint()
	c.SSHHost, c.SSHPort = h.Host, h.Port
	c.TargetOS = "linux"
	c.IdleTimeoutSeconds = int64(p.Settings.IdleTimeout / time.Second)
	c.Labels = p.leaseLabels(id, slug, h, keep, now)
}

// ---- sessions ---------------------------------------------------------------

// withRemote runs fn with a Remote for l's host: the pool's session when
// there is a pool, else a session of its own, closed afterwards. Crabbox's
// own known_hosts file is created first (dir 0700, file 0600).
func (p *Provider) withRemote(l *Lease, fn func(r *hostRemote) error) error {
	if err := ensureKnownHosts(l.Target); err != nil {
		return err
	}
	var s *sshx.Session
	if p.Tunnels != nil {
		var err error
		if s, err = p.Tunnels.Get(l.Target); err != nil {
			return err
		}
	} else {
		s = sshx.NewSession(p.Runner, l.Target, sshx.SessionOptions{})
		defer s.Close()
	}
	return fn(&hostRemote{s: s, l: l})
}

// ensureKnownHosts creates crabbox's own known_hosts file of t (strict
// targets use the user's file as it is).
func ensureKnownHosts(t lease.Target) error {
	if t.KnownHostsFile == "" {
		return fmt.Errorf("ssh host %s has no known_hosts file (no crabbox config dir: set HOME or XDG_CONFIG_HOME)", t.Host)
	}
	if t.StrictHostKeys {
		return nil
	}
	dir := filepath.Dir(t.KnownHostsFile)
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("creating known_hosts dir: %w", err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return fmt.Errorf("securing known_hosts dir: %w", err)
		}
	}
	f, err := os.OpenFile(t.KnownHostsFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		return f.Close()
	case errors.Is(err, fs.ErrExist):
		return os.Chmod(t.KnownHostsFile, 0o600)
	}
	return fmt.Errorf("creating known_hosts file: %w", err)
}

var _ owner.Remote = (*hostRemote)(nil)
