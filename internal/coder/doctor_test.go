package coder

import (
	"context"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/execx"
)

func TestDoctor(t *testing.T) {
	const notLoggedIn = "You are not logged in. Try logging in using 'coder login <url>'."
	type check struct{ Name, Status, Class string }
	cases := []struct {
		name        string
		version     execx.Reply
		whoami      execx.Reply
		list        execx.Reply
		wantCalls   []string // in order (doctor is sequential)
		wantChecks  []check
		wantSummary string
		wantMsg     []string // substrings of the failing check's message
		wantOK      bool
	}{
		{
			name:        "cli missing",
			version:     execx.Reply{ExitCode: 127, Stderr: "coder: command not found"},
			wantCalls:   []string{"coder version"},
			wantChecks:  []check{{"cli", "failed", ""}},
			wantSummary: "provider=coder cli=missing auth=unchecked inventory=unchecked mutation=false",
			wantMsg:     []string{"coder cli unavailable", "command not found"},
		},
		{
			name:        "not logged in",
			version:     execx.Reply{Stdout: "Coder v2.24.1+abc\nFull build of Coder"},
			whoami:      execx.Reply{ExitCode: 1, Stderr: notLoggedIn},
			wantCalls:   []string{"coder version", argvWhoami},
			wantChecks:  []check{{"cli", "pass", ""}, {"auth", "failed", "missing_login"}},
			wantSummary: "provider=coder cli=ready auth=missing_login inventory=unchecked mutation=false",
			wantMsg:     []string{"coder credential unavailable", "coder login <url>", "mutation=false", "not logged in"},
		},
		{
			// coder v2.27 with CODER_URL set and no or an expired token.
			name:        "signed out or session expired",
			version:     execx.Reply{Stdout: "Coder v2.27.0"},
			whoami:      execx.Reply{ExitCode: 1, Stderr: "Encountered an error running \"coder whoami\"\nerror: GET http://127.0.0.1:3000/api/v2/users/me: unexpected status code 401: You are signed out or your session has expired. Please sign in again to continue.\n\tError: API key is invalid."},
			wantCalls:   []string{"coder version", argvWhoami},
			wantChecks:  []check{{"cli", "pass", ""}, {"auth", "failed", "missing_login"}},
			wantSummary: "provider=coder cli=ready auth=missing_login inventory=unchecked mutation=false",
			wantMsg:     []string{"coder credential unavailable", "coder login <url>", "mutation=false", "signed out"},
		},
		{
			name:        "server unreachable",
			version:     execx.Reply{Stdout: "Coder v2.24.1"},
			whoami:      execx.Reply{ExitCode: 1, Stderr: "error: Get \"https://coder.example.com/api/v2/users/me\": dial tcp 127.0.0.1:1: connect: connection refused"},
			wantCalls:   []string{"coder version", argvWhoami},
			wantChecks:  []check{{"cli", "pass", ""}, {"auth", "failed", "auth_failed"}},
			wantSummary: "provider=coder cli=ready auth=failed inventory=unchecked mutation=false",
			wantMsg:     []string{"coder credential check failed", "connection refused", "mutation=false"},
		},
		{
			name:        "inventory fails",
			version:     execx.Reply{Stdout: "Coder v2.24.1"},
			whoami:      execx.Reply{Stdout: aliceWhoami},
			list:        execx.Reply{ExitCode: 1, Stderr: "inventory unavailable"},
			wantCalls:   []string{"coder version", argvWhoami, argvList},
			wantChecks:  []check{{"cli", "pass", ""}, {"auth", "pass", ""}, {"inventory", "failed", ""}},
			wantSummary: "provider=coder cli=ready auth=ready inventory=failed mutation=false",
			wantMsg:     []string{"inventory unavailable"},
		},
		{
			name:    "ready",
			version: execx.Reply{Stdout: "Coder v2.24.1"},
			whoami:  execx.Reply{Stdout: aliceWhoami},
			list: execx.Reply{Stdout: rowsJSON(readyRow("alice", "crabbox-blue", "ws1"), stoppedRow("alice", "crabbox-green", "ws2"),
				readyRow("alice", "personal", "ws3"))},
			wantCalls:   []string{"coder version", argvWhoami, argvList},
			wantChecks:  []check{{"cli", "pass", ""}, {"auth", "pass", ""}, {"inventory", "pass", ""}},
			wantSummary: "provider=coder cli=ready auth=ready inventory=ready api=list mutation=false leases=2 runtime=unchecked",
			wantOK:      true,
		},
		{
			name:        "ready, empty inventory",
			version:     execx.Reply{Stdout: "Coder v2.24.1"},
			whoami:      execx.Reply{Stdout: aliceWhoami},
			list:        execx.Reply{Stdout: "No workspaces found!"},
			wantCalls:   []string{"coder version", argvWhoami, argvList},
			wantChecks:  []check{{"cli", "pass", ""}, {"auth", "pass", ""}, {"inventory", "pass", ""}},
			wantSummary: "provider=coder cli=ready auth=ready inventory=ready api=list mutation=false leases=0 runtime=unchecked",
			wantOK:      true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			// An expired claim and a foreign-owner claim must not make
			// doctor mutate or widen its listing.
			h.claim(expired(coderClaim("cbx_0000000000c1", "blue", "alice/crabbox-blue", "ws1")))
			h.fake.On("coder version", tc.version)
			h.fake.On(argvWhoami, tc.whoami)
			h.fake.On(argvList, tc.list)
			r := h.p.Doctor(context.Background())

			got := h.argvs()
			if strings.Join(got, "\n") != strings.Join(tc.wantCalls, "\n") {
				t.Errorf("calls:\n got  %q\n want %q", got, tc.wantCalls)
			}
			for _, a := range got {
				if a != "coder version" && a != argvWhoami && a != argvList {
					t.Errorf("doctor ran %q", a)
				}
			}
			if r.Summary != tc.wantSummary {
				t.Errorf("summary:\n got  %q\n want %q", r.Summary, tc.wantSummary)
			}
			if r.OK != tc.wantOK {
				t.Errorf("OK = %v", r.OK)
			}
			if len(r.Checks) != len(tc.wantChecks) {
				t.Fatalf("checks = %+v", r.Checks)
			}
			for i, w := range tc.wantChecks {
				c := r.Checks[i]
				if c.Name != w.Name || c.Status != w.Status || c.Details["classification"] != w.Class || c.Details["mutation"] != "false" {
					t.Errorf("check %d = %+v, want %+v", i, c, w)
				}
				if c.Message == "" {
					t.Errorf("check %s has no message", c.Name)
				}
			}
			last := r.Checks[len(r.Checks)-1]
			for _, m := range tc.wantMsg {
				if !strings.Contains(last.Message, m) {
					t.Errorf("message %q does not contain %q", last.Message, m)
				}
			}
			if strings.Contains(r.Summary, "missing_login") && tc.wantChecks[len(tc.wantChecks)-1].Class == AuthFailed {
				t.Error("a server failure reads as missing login")
			}
			if tc.wantOK {
				if !strings.Contains(last.Message, "listed 2 Crabbox-owned") && !strings.Contains(last.Message, "listed 0 Crabbox-owned") {
					t.Errorf("inventory message %q", last.Message)
				}
			}
			if len(h.allClaims()) != 1 {
				t.Error("doctor touched claims")
			}
		})
	}
}
