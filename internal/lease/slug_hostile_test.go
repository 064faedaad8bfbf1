package lease

import (
	"regexp"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

var slugShape = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// TestValidateSlugHostile: every hostile --slug either normalizes to a
// safe slug ([a-z0-9-], at most MaxSlugLen) or is refused with exit 2.
func TestValidateSlugHostile(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" means refused
	}{
		{"blue-crab", "blue-crab"},
		{`it's "quoted"`, "it-s-quoted"},
		{"$(touch /tmp/x)", "touch-tmp-x"},
		{"`id`", "id"},
		{"${HOME}", "home"},
		{"a; rm -rf /", "a-rm-rf"},
		{"line1\nline2", "line1-line2"},
		{"../../etc/passwd", "etc-passwd"},
		{"--help", "help"},
		{"日本語", ""},
		{"crab\u202eevil", "crab-evil"},
		{"\u212aelvin", "kelvin"},
		{"a\x00b", "a-b"},
		{"\xff\xfe", ""},
		{"", ""},
		{"   ", ""},
		{"---", ""},
		{"*", ""},
		{strings.Repeat("a", 10*1024), ""},
		{strings.Repeat("-", 10*1024) + "ok", "ok"},
		{strings.Repeat("a", MaxSlugLen), strings.Repeat("a", MaxSlugLen)},
	}
	for _, tt := range tests {
		got, err := ValidateSlug(tt.in)
		if tt.want == "" {
			if err == nil || exitcode.Code(err) != exitcode.Usage {
				t.Errorf("ValidateSlug(%.40q) = %q, %v; want exit-2 refusal", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ValidateSlug(%.40q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
		if !slugShape.MatchString(got) || len(got) > MaxSlugLen {
			t.Errorf("ValidateSlug(%.40q) = %q: unsafe shape", tt.in, got)
		}
	}
}
