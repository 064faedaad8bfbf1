package sshhost

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/owner"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// hostReport is what doctor found on one host.
type hostReport struct {
	reachable, auth bool
	missing         []string
	workRoot        string // ok | creatable | unwritable
	err             error
}

// Doctor checks every configured host with one ssh round trip each (in
// parallel): reachability, authentication, the tools crabbox needs (sh,
// bash, git, rsync, tar) and whether the work root is (or can be made)
// writable. It never changes anything on a host; a host seen for the first
// time has its key recorded in crabbox's own known_hosts file, as any use
// would. OK is false when any host fails.
func (p *Provider) Doctor(ctx context.Context) DoctorReport {
	var r DoctorReport
	hosts := p.Settings.Hosts
	if len(hosts) == 0 {
		r.Checks = append(r.Checks, Check{Status: "failed", Name: "hosts", Message: noHostsError().Error(),
			Details: map[string]string{"mutation": "false"}})
		r.Summary = "provider=ssh hosts=0 reachable=0 auth=unchecked tools=unchecked mutation=false"
		return r
	}
	reports := make([]hostReport, len(hosts))
	var wg sync.WaitGroup
	for i := range hosts {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			reports[i] = p.doctorHost(ctx, hosts[i])
		}(i)
	}
	wg.Wait()
	reachable, authed, toolsOK, ok := 0, 0, true, true
	for i, h := range hosts {
		rep := reports[i]
		details := map[string]string{"mutation": "false", "endpoint": h.Endpoint(), "work_root": h.WorkRoot}
		if h.KnownHostsFile != "" {
			details["known_hosts"] = h.KnownHostsFile + " (strict)"
		} else {
			details["known_hosts"] = TOFUKnownHostsFile(p.ConfigDir, h.Host, h.Port) + " (recorded on first use)"
		}
		if rep.reachable {
			reachable++
		}
		if rep.auth {
			authed++
		}
		name := "host " + h.Name
		switch {
		case rep.err != nil:
			ok = false
			details["error"] = oneLine(rep.err.Error())
			r.Checks = append(r.Checks, Check{Status: "failed", Name: name, Message: hostFailure(h, rep), Details: details})
		case len(rep.missing) > 0 || rep.workRoot == "unwritable":
			ok = false
			var probs []string
			if len(rep.missing) > 0 {
				toolsOK = false
				details["missing"] = strings.Join(rep.missing, ",")
				probs = append(probs, "missing "+strings.Join(rep.missing, ", ")+" (install them on the host)")
			}
			if rep.workRoot == "unwritable" {
				probs = append(probs, fmt.Sprintf("work root %s cannot be written by %s (set the host's workRoot or ssh.workRoot)", h.WorkRoot, userOr(h.User)))
			}
			details["work_root_state"] = rep.workRoot
			r.Checks = append(r.Checks, Check{Status: "failed", Name: name,
				Message: fmt.Sprintf("ssh host %s (%s) is reachable but %s", h.Name, h.Endpoint(), strings.Join(probs, "; ")), Details: details})
		default:
			details["work_root_state"] = rep.workRoot
			r.Checks = append(r.Checks, Check{Status: "pass", Name: name,
				Message: fmt.Sprintf("ssh host %s (%s) ready: tools %s present, work root %s %s", h.Name, h.Endpoint(), strings.Join(doctorTools, " "), h.WorkRoot, rep.workRoot),
				Details: details})
		}
	}
	state := func(good bool) string {
		if good {
			return "ready"
		}
		return "failed"
	}
	tools := "ready"
	switch {
	case !toolsOK:
		tools = "missing"
	case authed < len(hosts):
		tools = "unchecked"
	}
	r.Summary = fmt.Sprintf("provider=ssh hosts=%d reachable=%d auth=%s tools=%s mutation=false",
		len(hosts), reachable, state(authed == len(hosts)), tools)
	r.OK = ok
	return r
}

// doctorHost runs doctorScript on h (no prelude: nothing is created).
func (p *Provider) doctorHost(ctx context.Context, h Host) hostReport {
	l := p.buildLease(&h, nil)
	var rep hostReport
	err := p.withRemote(l, func(r *hostRemote) error {
		cctx, cancel := context.WithTimeout(ctx, owner.Timeout)
		defer cancel()
		var out, errb strings.Builder
		code, err := r.s.Run(cctx, doctorScript(l.Target.WorkRoot), nil, &out, &errb)
		if err != nil {
			return err
		}
		rep.reachable, rep.auth = true, true
		if code != 0 {
			return fmt.Errorf("the check script exited %d: %s", code, execx.FirstLine(errb.String()))
		}
		rep.missing, rep.workRoot = parseDoctor(out.String())
		return nil
	})
	if err != nil {
		rep.err = err
		diag := err.Error()
		var te *sshx.TransportError
		if errors.As(err, &te) {
			diag = te.Diagnostics + "\n" + te.Detail
		}
		switch {
		case sshx.AsHostKeyError(err) != nil:
			rep.reachable = true
		case strings.Contains(diag, "Permission denied") || strings.Contains(diag, "Too many authentication failures"):
			rep.reachable = true
		}
	}
	return rep
}

// hostFailure is the doctor message for a host that could not be checked.
func hostFailure(h Host, rep hostReport) string {
	switch {
	case sshx.AsHostKeyError(rep.err) != nil:
		return fmt.Sprintf("ssh host %s (%s): %v", h.Name, h.Endpoint(), rep.err)
	case rep.reachable && !rep.auth:
		key := "ssh's default keys or agent"
		if h.IdentityFile != "" {
			key = h.IdentityFile
		}
		return fmt.Sprintf("ssh host %s (%s) refused authentication with %s; authorize that key for %s on the host, or set identityFile / --ssh-identity: %s",
			h.Name, h.Endpoint(), key, userOr(h.User), oneLine(rep.err.Error()))
	case rep.reachable:
		return fmt.Sprintf("ssh host %s (%s): %s", h.Name, h.Endpoint(), oneLine(rep.err.Error()))
	}
	return fmt.Sprintf("ssh host %s (%s) is unreachable: %s; check the address and port (%s) and that sshd runs there",
		h.Name, h.Endpoint(), oneLine(rep.err.Error()), strconv.Itoa(h.Port))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
