package envfwd

import (
	"slices"
	"testing"
)

// TestDenyList: no pattern and no configured entry forwards a credential
// or a crabbox internal; only an exact command-line name does.
func TestDenyList(t *testing.T) {
	environ := []string{
		"CODER_SESSION_TOKEN=tok", "CODER_URL=http://x", "CODER_AGENT_TOKEN=a",
		"CRABBOX_TRUST_REPO_CONFIG=1", "SSH_AUTH_SOCK=/tmp/agent", "GITHUB_TOKEN=gh",
		"AWS_SECRET_ACCESS_KEY=aws", "CI=true", "NODE_OPTIONS=--x",
	}
	cases := []struct {
		name           string
		config, cli    []string
		want, wantHeld []string
	}{
		{"patterns never match denied names", []string{"C*", "S*"}, []string{"A*"},
			[]string{"AWS_SECRET_ACCESS_KEY", "CI"}, []string{"CODER_AGENT_TOKEN", "CODER_SESSION_TOKEN", "CODER_URL", "CRABBOX_TRUST_REPO_CONFIG", "SSH_AUTH_SOCK"}},
		{"CODER_* on the command line", nil, []string{"CODER_*"},
			nil, []string{"CODER_AGENT_TOKEN", "CODER_SESSION_TOKEN", "CODER_URL"}},
		{"exact config entry is not enough", []string{"CODER_SESSION_TOKEN", "CI"}, nil,
			[]string{"CI"}, []string{"CODER_SESSION_TOKEN"}},
		{"exact command-line name forwards", nil, []string{"CODER_SESSION_TOKEN", "SSH_AUTH_SOCK"},
			[]string{"CODER_SESSION_TOKEN", "SSH_AUTH_SOCK"}, nil},
		{"exact name and a pattern", []string{"G*"}, []string{"CODER_URL,CODER_*"},
			[]string{"CODER_URL", "GITHUB_TOKEN"}, []string{"CODER_AGENT_TOKEN", "CODER_SESSION_TOKEN"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseAllowlists(tc.config, tc.cli)
			if err != nil {
				t.Fatal(err)
			}
			got := Names(a.Select(environ))
			if !slices.Equal(got, tc.want) {
				t.Errorf("forwarded %v, want %v", got, tc.want)
			}
			if held := a.Withheld(environ); !slices.Equal(held, tc.wantHeld) {
				t.Errorf("withheld %v, want %v", held, tc.wantHeld)
			}
			var forced []string
			for _, n := range tc.want {
				if Denied(n) {
					forced = append(forced, n)
				}
			}
			if f := Forced(a.Select(environ)); !slices.Equal(f, forced) {
				t.Errorf("forced %v, want %v", f, forced)
			}
		})
	}
}
