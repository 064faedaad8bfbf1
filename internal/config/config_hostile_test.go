package config

import (
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// TestWorkRootHostile: hostile work roots, from flags, env and YAML, are
// either a clean safe absolute path or refused with exit 2, before any
// workspace exists (the sync would refuse them later, after creating one).
func TestWorkRootHostile(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" refused
	}{
		{"/home/coder/crabbox", "/home/coder/crabbox"},
		{"/srv/a/../b/./c/", "/srv/b/c"},
		{"/srv/a+b@c,d=e_f.g-h", "/srv/a+b@c,d=e_f.g-h"},
		{"  /srv/trimmed  ", "/srv/trimmed"},
		{"/home/coder/$(touch x)", ""},
		{"/home/coder/`id`", ""},
		{"/home/coder/it's", ""},
		{`/home/coder/"q"`, ""},
		{"/home/coder/a b", ""},
		{"/home/coder/a\nb", ""},
		{"/home/coder/a;b", ""},
		{"/home/coder/~x", ""},
		{"/home/coder/*", ""},
		{"/home/coder/日本", ""},
		{"/home/coder/a\x00b", ""},
		{"../../etc", ""},
		{"relative/dir", ""},
		{"~/work", ""},
		{"/home/coder/../..", ""}, // cleans to "/": too broad
		{"/usr/../home", ""},      // too broad
		{"/" + strings.Repeat("a", 10*1024), "/" + strings.Repeat("a", 10*1024)},
	}
	for _, tt := range tests {
		for _, layer := range []string{"flag", "env", "yaml"} {
			f := newFixture(t)
			var flags map[string]string
			switch layer {
			case "flag":
				flags = map[string]string{"provider": "coder", "coder-work-root": tt.in}
			case "env":
				f.env["CRABBOX_PROVIDER"] = "coder"
				f.env["CRABBOX_CODER_WORK_ROOT"] = tt.in
			case "yaml":
				if strings.ContainsAny(tt.in, "\n\x00") {
					continue // covered by the other layers
				}
				f.writeRepo("crabbox.yaml", "provider: coder\ncoder:\n  workRoot: '"+strings.ReplaceAll(tt.in, "'", "''")+"'\n")
			}
			c, err := f.load(flags)
			if tt.want == "" {
				if exitcode.Code(err) != exitcode.Usage {
					t.Errorf("%s %.40q: got %v, want exit-2 refusal", layer, tt.in, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s %.40q: %v", layer, tt.in, err)
				continue
			}
			if generic := setting(t, c, "workRoot").Value; c.Coder.WorkRoot != tt.want || generic != tt.want {
				t.Errorf("%s %.40q: workRoot %q coder.workRoot %.40q; want %.40q", layer, tt.in, generic, c.Coder.WorkRoot, tt.want)
			}
		}
	}
}

// TestYAMLIntegerDurationsHostile: integer durations (seconds) that would
// overflow, including negative ones that wrapped around to a positive
// duration, are refused with exit 2.
func TestYAMLIntegerDurationsHostile(t *testing.T) {
	for _, v := range []string{"-1", "0", "-9223372037", "9223372037", "-4611686019", "4611686019", "99999999999999999999", "0x10", "1e3"} {
		f := newFixture(t)
		f.writeRepo("crabbox.yaml", "ttl: "+v+"\n")
		if _, err := f.load(nil); exitcode.Code(err) != exitcode.Usage {
			t.Errorf("ttl: %s: got %v, want exit-2 refusal", v, err)
		}
	}
	f := newFixture(t)
	f.writeRepo("crabbox.yaml", "ttl: 3600\n")
	if c, err := f.load(nil); err != nil || c.TTL.Seconds() != 3600 {
		t.Errorf("ttl: 3600: %v", err)
	}
}
