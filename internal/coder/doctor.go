package coder

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Doctor checks the Coder CLI, its login and the inventory. It only ever
// calls `version`, `whoami -o json` and `list -o json`: nothing is mutated.
func (p *Provider) Doctor(ctx context.Context) DoctorReport {
	state := map[string]string{"cli": "unchecked", "auth": "unchecked", "inventory": "unchecked"}
	var r DoctorReport
	summary := func(extra ...string) string {
		parts := []string{"provider=coder", "cli=" + state["cli"], "auth=" + state["auth"], "inventory=" + state["inventory"]}
		parts = append(parts, extra...)
		return strings.Join(append(parts, "mutation=false"), " ")
	}
	add := func(status, name, msg string, details map[string]string) {
		if details == nil {
			details = map[string]string{}
		}
		details["mutation"] = "false"
		r.Checks = append(r.Checks, Check{Status: status, Name: name, Message: msg, Details: details})
	}

	version, err := p.Client.Version(ctx)
	if err != nil {
		state["cli"] = "missing"
		add("failed", "cli", fmt.Sprintf("coder cli unavailable (%s): %s; install the Coder CLI or set coder.cliPath / --coder-cli", p.Client.cli(), detail(err)), nil)
		r.Summary = summary()
		return r
	}
	state["cli"] = "ready"
	add("pass", "cli", "coder CLI available: "+version, map[string]string{"version": version})

	who, err := p.Client.WhoAmI(ctx)
	if err != nil {
		class := ClassifyAuth(detail(err))
		if class == AuthMissingLogin {
			state["auth"] = AuthMissingLogin
			add("failed", "auth", "coder credential unavailable: run `coder login <url>`; mutation=false detail="+oneLine(detail(err)), map[string]string{"classification": class})
		} else {
			state["auth"] = "failed"
			add("failed", "auth", "coder credential check failed: mutation=false detail="+oneLine(detail(err)), map[string]string{"classification": class})
		}
		r.Summary = summary()
		return r
	}
	state["auth"] = "ready"
	add("pass", "auth", fmt.Sprintf("coder login ready: %s at %s", who.Username, who.URL), map[string]string{"user": who.Username, "url": who.URL})

	rows, err := p.Client.List(ctx, false)
	if err != nil {
		state["inventory"] = "failed"
		add("failed", "inventory", "coder inventory unavailable: "+oneLine(detail(err)), nil)
		r.Summary = summary()
		return r
	}
	owned := 0
	for _, w := range rows {
		if ok, _, _ := Owned(w, p.Settings.Prefix); ok {
			owned++
		}
	}
	state["inventory"] = "ready"
	add("pass", "inventory", fmt.Sprintf("listed %d Crabbox-owned Coder workspaces", owned), map[string]string{"leases": fmt.Sprint(owned), "workspaces": fmt.Sprint(len(rows))})
	r.Summary = summary("api=list") // mutation=false appended last
	r.Summary = strings.Replace(r.Summary, "mutation=false", fmt.Sprintf("mutation=false leases=%d runtime=unchecked", owned), 1)
	r.OK = true
	return r
}

// detail is the most useful text of a CLI error: its output when there is
// one.
func detail(err error) string {
	var ce *CLIError
	if errors.As(err, &ce) {
		if ce.Output != "" {
			return ce.Output
		}
		if ce.Err != nil {
			return ce.Err.Error()
		}
	}
	return err.Error()
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
