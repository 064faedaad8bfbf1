package remotecmd

import "testing"

func TestNeedsShell(t *testing.T) {
	for argv, want := range map[string]bool{
		"make":              false,
		"./script.sh":       false,
		"a-b_c=d,e.f/g:h@i": false,
		"pnpm i":            true,
		"a\tb":              true,
		"a\nb":              true,
		"a&&b":              true,
		"a|b":               true,
		"a;b":               true,
		"a<b":               true,
		"a>b":               true,
		"*.go":              true,
		"$HOME":             true,
		"(x)":               true,
		"`id`":              true,
	} {
		if got := NeedsShell([]string{argv}); got != want {
			t.Errorf("NeedsShell(%q) = %v, want %v", argv, got, want)
		}
	}
	if NeedsShell([]string{"echo", "a && b"}) || NeedsShell(nil) {
		t.Error("NeedsShell is only for a single word")
	}
}
