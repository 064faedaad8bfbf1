package coder

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// ProviderName is the canonical provider name recorded in claims.
const ProviderName = "coder"

// Settings is the Coder part of crabbox's configuration.
type Settings struct {
	CLI                  string
	Template             string
	Preset               string
	Prefix               string // normalized workspace prefix, ends with "-"
	WorkRoot             string
	Wait                 string // yes | no | auto
	UseParameterDefaults bool
	Parameters           []string
	RichParameterFile    string
	DeleteOnRelease      bool
	// ReleaseOverride is the release action given on the command line
	// (--coder-delete-on-release[=false]): ActionDelete, ActionStop or ""
	// (none). Only it may turn a lease whose claim recorded stop into a
	// delete; a config value (user or repo) never does.
	ReleaseOverride string
	IdleTimeout     time.Duration
	TTL             time.Duration
}

// ReleaseAction is "delete" when deleteOnRelease is set, else "stop".
func (s Settings) ReleaseAction() string {
	if s.DeleteOnRelease {
		return ActionDelete
	}
	return ActionStop
}

// Provider runs the Coder lease lifecycle: acquire (with rollback),
// resolve, release, cleanup, list and doctor. It records leases in local
// claims and never stops or deletes a workspace without an exact claim
// (docs/providers/coder.md, Release).
type Provider struct {
	Client    *Client
	Claims    *claims.Store
	Settings  Settings
	ConfigDir string // crabbox's config dir (per-workspace known_hosts live under it)
	Now       func() time.Time
	Events    func(Event)
	// Tunnels, when set, is the process's ssh pool: Resolve uses a live
	// persistent master from it (fastpath.go), and release, cleanup and
	// --reclaim end a lease's persistent master first.
	Tunnels *sshx.Pool
}

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
	p.emit(Event{Kind: EventWarning, Message: fmt.Sprintf(format, args...)})
}

// ---- inventory ------------------------------------------------------------

// session is what one flow learned from Coder: who is logged in and the
// workspaces it may see.
type session struct {
	who      WhoAmI
	rows     []Workspace
	all      bool
	released []claims.Released // this deployment's released records
}

// inventory asks whoami and `list -o json` concurrently (so the pair costs
// one round trip), then `list --all -o json` only when needAll says a ref
// belongs to another owner.
func (p *Provider) inventory(ctx context.Context, needAll func(who WhoAmI) bool) (*session, error) {
	var (
		who       WhoAmI
		rows      []Workspace
		whoErr    error
		listErr   error
		waitGroup sync.WaitGroup
	)
	waitGroup.Add(1)
	go func() {
		defer waitGroup.Done()
		who, whoErr = p.Client.WhoAmI(ctx)
	}()
	rows, listErr = p.Client.List(ctx, false)
	waitGroup.Wait()
	if whoErr != nil {
		return nil, whoErr
	}
	if listErr != nil {
		return nil, listErr
	}
	s := &session{who: who, rows: rows, released: p.releasedRecords(who)}
	if needAll != nil && needAll(who) {
		all, err := p.Client.List(ctx, true)
		if err != nil {
			return nil, err
		}
		s.rows, s.all = all, true
	}
	return s, nil
}

// relist refreshes rows with the same scope.
func (p *Provider) relist(ctx context.Context, s *session) error {
	rows, err := p.Client.List(ctx, s.all)
	if err != nil {
		return err
	}
	s.rows = rows
	return nil
}

func ownerOf(ref string) string {
	if i := strings.Index(ref, "/"); i >= 0 {
		return ref[:i]
	}
	return ""
}

func bareName(ref string) string {
	if i := strings.LastIndex(ref, "/"); i >= 0 {
		return ref[i+1:]
	}
	return ref
}

// foreignOwner reports whether ref names a workspace of another user.
func foreignOwner(ref string, who WhoAmI) bool {
	o := ownerOf(ref)
	return o != "" && !strings.EqualFold(o, who.Username)
}

// ---- claims ---------------------------------------------------------------

// coderClaims returns this deployment's Coder claims. Claims recorded for
// another deployment URL are skipped with a warning.
func (p *Provider) coderClaims(who WhoAmI) []claims.Claim {
	list, _, err := p.Claims.List()
	if err != nil {
		p.warnf("reading claims: %v", err)
		return nil
	}
	var out []claims.Claim
	for _, c := range list {
		if c.Provider != ProviderName {
			continue
		}
		if c.CoderURL != "" && who.URL != "" && !sameURL(c.CoderURL, who.URL) {
			p.warnf("ignoring claim %s: it belongs to Coder deployment %s, not %s", c.LeaseID, c.CoderURL, who.URL)
			continue
		}
		out = append(out, c)
	}
	return out
}

// sameURL compares Coder deployment URLs after normalizing the scheme and
// host case, a default port (80 for http, 443 for https) and trailing
// slashes. Different host spellings (localhost vs 127.0.0.1) stay
// different: crabbox does not resolve names.
func sameURL(a, b string) bool {
	return NormalizeURL(a) == NormalizeURL(b)
}

// NormalizeURL is the form sameURL compares.
func NormalizeURL(raw string) string {
	s := strings.TrimSpace(raw)
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return strings.ToLower(strings.TrimRight(s, "/"))
	}
	scheme := strings.ToLower(u.Scheme)
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if port != "" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	out := scheme + "://" + host + strings.TrimRight(u.EscapedPath(), "/")
	if u.RawQuery != "" {
		out += "?" + u.RawQuery
	}
	return out
}

// claimRef is the workspace ref a claim points at.
func (p *Provider) claimRef(c claims.Claim) string {
	for _, r := range []string{c.CloudID, c.Labels["coder_workspace_ref"], c.Labels["coder_workspace"]} {
		if strings.TrimSpace(r) != "" {
			return r
		}
	}
	name, err := UniqueWorkspaceName(p.Settings.Prefix, c.Slug, c.LeaseID)
	if err != nil {
		return ""
	}
	return name
}

// claimMatchesIdent reports whether a claim is addressed by ident: lease
// ID, normalized slug, full ref or bare workspace name.
func (p *Provider) claimMatchesIdent(c claims.Claim, ident string) bool {
	if c.LeaseID == ident {
		return true
	}
	if n := lease.NormalizeSlug(ident); n != "" && lease.NormalizeSlug(c.Slug) == n {
		return true
	}
	ref := p.claimRef(c)
	if ref == "" {
		return false
	}
	return strings.EqualFold(ref, ident) || (!strings.Contains(ident, "/") && strings.EqualFold(bareName(ref), ident))
}

// ClaimMatchesIdent reports whether a claim is addressed by ident (lease
// ID, slug, workspace ref or bare workspace name), as Resolve matches it;
// prefix is the configured workspace prefix.
func ClaimMatchesIdent(c claims.Claim, ident, prefix string) bool {
	p := &Provider{Settings: Settings{Prefix: prefix}}
	return p.claimMatchesIdent(c, strings.TrimSpace(ident))
}

// rowForClaim finds the inventory row a claim is bound to: by workspace ID
// when the claim recorded one (exact), else by owner/name, else by a bare
// name that is unique in the listing.
func rowForClaim(c claims.Claim, ref string, rows []Workspace) (*Workspace, error) {
	if c.WorkspaceID != "" {
		for i := range rows {
			if rows[i].ID == c.WorkspaceID {
				return &rows[i], nil
			}
		}
		return nil, nil
	}
	var hits []*Workspace
	for i := range rows {
		r := &rows[i]
		if strings.Contains(ref, "/") {
			if strings.EqualFold(r.Ref(), ref) {
				hits = append(hits, r)
			}
		} else if strings.EqualFold(r.Name, ref) {
			hits = append(hits, r)
		}
	}
	switch len(hits) {
	case 0:
		return nil, nil
	case 1:
		return hits[0], nil
	}
	return nil, exitcode.Errorf(exitcode.NotFound, "coder workspace %q is ambiguous: %d workspaces of different owners have that name; use owner/name", ref, len(hits))
}

// claimForRow finds the claim bound to a row (cleanup, list).
func (p *Provider) claimForRow(w Workspace, cs []claims.Claim, rows []Workspace) *claims.Claim {
	for i := range cs {
		c := cs[i]
		if c.WorkspaceID != "" {
			if c.WorkspaceID == w.ID {
				return &cs[i]
			}
			continue
		}
		ref := p.claimRef(c)
		if ref == "" {
			continue
		}
		if strings.Contains(ref, "/") {
			if strings.EqualFold(ref, w.Ref()) {
				return &cs[i]
			}
			continue
		}
		if strings.EqualFold(ref, w.Name) && (w.Owner == "" || uniqueName(w.Name, rows)) {
			return &cs[i]
		}
	}
	return nil
}

func uniqueName(name string, rows []Workspace) bool {
	n := 0
	for _, r := range rows {
		if strings.EqualFold(r.Name, name) {
			n++
		}
	}
	return n == 1
}

// ---- building leases --------------------------------------------------------

func unixLabel(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

func parseUnixLabel(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	return time.Unix(n, 0).UTC()
}

// buildLease combines a row (may be nil for a missing workspace) and a
// claim (may be nil) into a Lease with labels (what inspect --json shows)
// and an SSH target.
func (p *Provider) buildLease(w *Workspace, c *claims.Claim) (*Lease, error) {
	l := &Lease{Provider: ProviderName, Labels: map[string]string{}}
	if c != nil {
		for k, v := range c.Labels {
			l.Labels[k] = v
		}
		cc := *c
		l.Claim = &cc
		l.ID, l.Slug = c.LeaseID, c.Slug
		l.Ref = p.claimRef(*c)
		l.Workspace = bareName(l.Ref)
		l.WorkspaceID = c.WorkspaceID
		l.Owned = true
	}
	if w != nil {
		owned, id, slug := Owned(*w, p.Settings.Prefix)
		if l.ID == "" && owned {
			l.ID, l.Slug = id, slug
		}
		if l.ID == "" { // an unowned workspace still gets a stable synthetic ID
			l.ID = lease.SyntheticLeaseID(w.Ref())
		}
		l.Owned = l.Owned || owned
		for k, v := range w.Labels {
			if _, ok := l.Labels[k]; !ok {
				l.Labels[k] = v
			}
		}
		l.Workspace, l.Ref, l.WorkspaceID, l.Owner = w.Name, w.Ref(), w.ID, w.Owner
		l.State, l.Ready = w.State(), w.Ready()
		l.ServerType, l.Template = w.ServerType(), w.Template
	} else {
		l.State = StateMissing
		l.ServerType = "coder-workspace"
		l.Owner = ownerOf(l.Ref)
	}
	l.Keep = strings.EqualFold(l.Labels["keep"], "true")
	if _, ok := l.Labels["coder_release_action"]; !ok {
		l.Labels["coder_release_action"] = p.Settings.ReleaseAction()
	}
	l.Labels["provider"] = ProviderName
	l.Labels["lease"] = l.ID
	if l.Slug != "" {
		l.Labels["slug"] = l.Slug
	}
	l.Labels["coder_workspace"] = l.Workspace
	l.Labels["coder_workspace_ref"] = l.Ref
	l.Labels["work_root"] = p.Settings.WorkRoot
	l.Labels["state"] = l.State
	l.Labels["keep"] = strconv.FormatBool(l.Keep)
	l.CreatedAt = parseUnixLabel(l.Labels["created_at"])
	l.ExpiresAt = parseUnixLabel(l.Labels["expires_at"])
	if c != nil {
		if t, err := time.Parse(time.RFC3339, c.LastUsedAt); err == nil {
			l.LastTouchedAt = t
		}
		l.IdleTimeout = time.Duration(c.IdleTimeoutSeconds) * time.Second
	}
	if l.Ref != "" {
		l.Target = p.sshTarget(l.Ref, l.WorkspaceID)
	}
	return l, nil
}

// sshTarget is the ssh target of workspace ref (ID id). Its ControlKey,
// for a persistent control master, is the workspace ID: a workspace
// recreated under the same name never shares the old one's master.
func (p *Provider) sshTarget(ref, id string) lease.Target {
	t := lease.Target{
		User:           SSHUser,
		Host:           HostAlias(ref),
		Port:           SSHPort,
		ProxyCommand:   ProxyCommand(p.Settings.CLI, p.Settings.Wait, ref),
		KnownHostsFile: KnownHostsFile(p.ConfigDir, ref, id),
		ReadyCheck:     ReadyCheck,
		WorkRoot:       p.Settings.WorkRoot,
	}
	if id != "" {
		t.ControlKey = ProviderName + ":" + id
	}
	return t
}

// leaseForRow is buildLease for a listed row, with crabbox's released
// record of the row attached when it has no claim: the lease then carries
// the released lease ID and slug.
func (p *Provider) leaseForRow(w *Workspace, c *claims.Claim, s *session) (*Lease, error) {
	l, err := p.buildLease(w, c)
	if err != nil || c != nil || w == nil || s == nil {
		return l, err
	}
	if r := releasedForRow(*w, s.released); r != nil {
		rr := *r
		l.Released = &rr
		l.ID, l.Slug, l.Owned = r.LeaseID, r.Slug, true
		l.Labels["lease"] = r.LeaseID
		if r.Slug != "" {
			l.Labels["slug"] = r.Slug
		}
		if t := r.ReleasedTime(); !t.IsZero() {
			l.LastTouchedAt = t
		}
	}
	return l, nil
}

// leaseLabels are the labels a new claim records.
func (p *Provider) leaseLabels(id, slug, name, ref string, keep bool, now time.Time) map[string]string {
	l := map[string]string{
		"crabbox":              "true",
		"created_by":           "crabbox",
		"provider":             ProviderName,
		"lease":                id,
		"slug":                 slug,
		"keep":                 strconv.FormatBool(keep),
		"coder_workspace":      name,
		"coder_workspace_ref":  ref,
		"coder_release_action": p.Settings.ReleaseAction(),
		"state":                "provisioning",
		"work_root":            p.Settings.WorkRoot,
		"target":               "linux",
		"created_at":           unixLabel(now),
		"last_touched_at":      unixLabel(now),
		"coder_template":       p.Settings.Template,
		"coder_preset":         p.Settings.Preset,
		"coder_create_key":     p.Settings.CreateKey(),
	}
	if len(p.Settings.Parameters) > 0 {
		l["coder_parameters"] = strings.Join(p.Settings.Parameters, "\n")
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
