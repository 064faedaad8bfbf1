package sshhost

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/provider"
	"github.com/crabbox-dev/crabbox/internal/remotecmd"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// rollbackTimeout bounds the release that undoes a failed acquisition.
const rollbackTimeout = time.Minute

// holder says why one host could not be taken.
type holder struct {
	host   Host
	reason string
	err    error // a transport failure (nil when the host is simply held)
}

// Acquire claims the first free configured host for a new lease, in
// ssh.hosts order. A host is free when this state dir has no claim on it
// and its owner record names no other machine and no other machine runs a
// command there. The local claim is written under the claims store's
// allocation lock (so parallel acquisitions here never pick the same
// host), then the owner record is written on the host (one round trip,
// under the host's owner lock). A host found held or unreachable loses the
// claim just made and the next one is tried. When none is left the error
// names who holds each host: exit 5, or exit 7 when a host's key was
// refused or no host could be reached at all. req.Reclaim never takes a
// host over from another machine here (use Resolve with Prepare and
// Reclaim, i.e. `crabbox ssh --reclaim <host>`).
func (p *Provider) Acquire(ctx context.Context, req AcquireRequest) (*Lease, error) {
	if req.RepoRoot == "" {
		return nil, exitcode.Errorf(exitcode.Usage, "ssh acquire needs a repository root to bind the claim to")
	}
	if len(p.Settings.Hosts) == 0 {
		return nil, noHostsError()
	}
	tried := map[string]bool{}
	held := map[string]holder{} // by endpoint: why each host was not taken
	for {
		id := lease.NewLeaseID()
		h, local, err := p.claimFree(id, req, tried)
		if err != nil {
			return nil, err
		}
		for _, hd := range local {
			if _, seen := held[strings.ToLower(hd.host.Endpoint())]; !seen {
				held[strings.ToLower(hd.host.Endpoint())] = hd
			}
		}
		if h == nil {
			return nil, allBusy(p.Settings.Hosts, held)
		}
		tried[strings.ToLower(h.Endpoint())] = true
		claim, err := p.Claims.Get(id)
		if err != nil || claim == nil {
			return nil, fmt.Errorf("claim %s was not written: %v", id, err)
		}
		l := p.buildLease(h, claim)
		why, err := p.takeOwner(ctx, l)
		if err != nil || why != "" {
			if rmErr := p.Claims.Remove(id); rmErr != nil {
				p.warnf("removing the claim %s of host %s: %v", id, h.Name, rmErr)
			}
			if err != nil && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if err != nil && !isTransport(err) {
				return nil, err
			}
			hd := holder{host: *h, reason: why, err: err}
			if err != nil {
				hd.reason = "unreachable: " + err.Error()
				if he := sshx.AsHostKeyError(err); he != nil {
					hd.reason = "host key refused: " + err.Error()
				}
			}
			held[strings.ToLower(h.Endpoint())] = hd
			if len(tried) < len(p.Settings.Hosts) {
				p.warnf("ssh host %s is not available (%s); trying the next host", h.Name, hd.reason)
			}
			continue
		}
		return p.finishAcquire(ctx, req, l)
	}
}

// claimFree picks the first host in order with no claim here that was not
// tried yet and writes the lease's claim for it, under the allocation
// lock. It returns nil when none is left, and the hosts it skipped for a
// claim here.
func (p *Provider) claimFree(id string, req AcquireRequest, tried map[string]bool) (*Host, []holder, error) {
	var chosen *Host
	var held []holder
	now := p.now()
	err := p.Claims.AllocateTx(func(tx *claims.Tx) error {
		all, _, err := p.Claims.List()
		if err != nil {
			return err
		}
		var cs []claims.Claim
		for _, c := range all {
			if c.Provider == ProviderName {
				cs = append(cs, c)
			}
		}
		for i := range p.Settings.Hosts {
			h := &p.Settings.Hosts[i]
			if tried[strings.ToLower(h.Endpoint())] {
				continue
			}
			if c := claimForHost(*h, cs); c != nil {
				held = append(held, holder{host: *h, reason: "claimed on this machine by " + describeClaim(*c)})
				continue
			}
			chosen = h
			break
		}
		if chosen == nil {
			return nil
		}
		slug, err := claims.AllocateSlug(all, req.Slug, id)
		if err != nil {
			return err
		}
		_, err = p.Claims.Update(id, func(c *claims.Claim, exists bool) error {
			if err := claims.Bind(c, exists, req.RepoRoot, req.Reclaim, now); err != nil {
				return err
			}
			p.recordClaim(c, id, slug, *chosen, req.Keep, now)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return chosen, held, nil
}

// takeOwner writes this machine's owner record on l's host unless another
// machine owns it or runs a command there (then why says so). One round
// trip.
func (p *Provider) takeOwner(ctx context.Context, l *Lease) (why string, err error) {
	err = p.withRemote(l, func(r *hostRemote) error {
		res, err := p.owners().Check(ctx, r, l, false, true)
		if err != nil {
			return err
		}
		switch res.Code {
		case remotecmd.OwnerForeign:
			why = fmt.Sprintf("owned by machine %s (lease %s, since %s)", res.Record.MachineID, dash(res.Record.LeaseID), dash(res.Record.CreatedAt))
		case remotecmd.OwnerBusy:
			b := res.Busy[0]
			why = fmt.Sprintf("machine %s runs %s there", dash(b.MachineID), b.RunID)
		}
		return nil
	})
	return why, err
}

// finishAcquire waits for SSH (req.Ready) and marks the claim ready; a
// failure drops the owner record and the claim again, unless Keep.
func (p *Provider) finishAcquire(ctx context.Context, req AcquireRequest, l *Lease) (*Lease, error) {
	if req.Ready != nil {
		if err := req.Ready(ctx, l); err != nil {
			return nil, p.rollback(ctx, req, l, err)
		}
	}
	claim, err := p.Claims.Update(l.ID, func(c *claims.Claim, exists bool) error {
		if !exists {
			return fmt.Errorf("the claim of lease %s disappeared", l.ID)
		}
		c.Labels["state"] = StateReady
		return nil
	})
	if err != nil {
		return nil, p.rollback(ctx, req, l, err)
	}
	nl := p.buildLease(p.hostForClaim(*claim), claim)
	return nl, nil
}

// rollback undoes an acquisition whose host was claimed: the owner record
// and the claim go (the host is never touched otherwise), unless Keep.
func (p *Provider) rollback(ctx context.Context, req AcquireRequest, l *Lease, cause error) error {
	if req.Keep {
		return fmt.Errorf("%w; host %s stays claimed by lease %s (--keep); to release it: %s", cause, l.Workspace, l.ID, exitcode.Next("crabbox stop --provider ssh "+l.ID))
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	p.emit(Event{Kind: provider.EventRollback, Message: fmt.Sprintf("rolling back: releasing ssh host %s", l.Workspace)})
	if _, err := p.dropRemote(rctx, l, false); err != nil {
		p.warnf("could not drop the owner record on host %s (%v); it names this machine, which takes it over on its next claim", l.Workspace, execx.FirstLine(err.Error()))
	}
	if err := p.Claims.Remove(l.ID); err != nil {
		p.warnf("removing claim %s: %v", l.ID, err)
	}
	return cause
}

// isTransport reports whether err is a failure to reach or talk to the
// host (exit 7), after which the next host may be tried.
func isTransport(err error) bool {
	var te *sshx.TransportError
	return exitcode.Code(err) == exitcode.Transport || errors.As(err, &te)
}

// allBusy is the error of an acquisition that found no free host.
func allBusy(hosts []Host, byEndpoint map[string]holder) error {
	var parts []string
	var keyErr, transportOnly = error(nil), true
	var held []holder
	for _, h := range hosts { // in configured order
		if hd, ok := byEndpoint[strings.ToLower(h.Endpoint())]; ok {
			held = append(held, hd)
		}
	}
	for _, h := range held {
		parts = append(parts, fmt.Sprintf("%s (%s)", h.host.Name, h.reason))
		if h.err == nil {
			transportOnly = false
		} else if sshx.AsHostKeyError(h.err) != nil && keyErr == nil {
			keyErr = h.err
		}
	}
	msg := fmt.Sprintf("no free ssh host: all %d configured hosts are taken: %s", len(hosts), strings.Join(parts, "; "))
	switch {
	case keyErr != nil:
		return exitcode.New(exitcode.Transport, &messageError{msg: msg, err: keyErr})
	case transportOnly && len(held) > 0:
		return exitcode.Errorf(exitcode.Transport, "%s. No host could be reached; to check them: %s", msg, exitcode.Next("crabbox doctor --provider ssh"))
	}
	return exitcode.Errorf(exitcode.NotFound,
		"%s. Release one of this machine's leases with `crabbox stop <lease>`, add hosts to ssh.hosts, or take a host over from another machine with `crabbox ssh --provider ssh --reclaim <host>` (its run there may break)", msg)
}

func describeClaim(c claims.Claim) string {
	s := "lease " + c.LeaseID
	if c.Slug != "" {
		s += " (slug " + c.Slug + ")"
	}
	if c.RepoRoot != "" {
		s += " for repo " + c.RepoRoot
	}
	return s
}

func noHostsError() error {
	return exitcode.Errorf(exitcode.Usage, "provider=ssh has no hosts: list them in ssh.hosts (config), CRABBOX_SSH_HOSTS=user@host[:port],… or --ssh-host user@host[:port]")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// messageError is msg, wrapping err (which msg already tells).
type messageError struct {
	msg string
	err error
}

func (e *messageError) Error() string { return e.msg }
func (e *messageError) Unwrap() error { return e.err }
