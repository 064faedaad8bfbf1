package execx

import "testing"

func TestFirstLine(t *testing.T) {
	for in, want := range map[string]string{
		"":                       "",
		"one":                    "one",
		"  \n one \n two\n":      "one ",
		"exit status 2\nstderr:": "exit status 2",
	} {
		if got := FirstLine(in); got != want {
			t.Errorf("FirstLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLastLines(t *testing.T) {
	for in, want := range map[string]string{
		"":                          "",
		"\n \n":                     "",
		"only":                      "only",
		"a\n\n  b  \n":              "a; b",
		"1\n2\n3\n4\n\n5\n  \n":     "3; 4; 5",
		"warning\nssh: refused\r\n": "warning; ssh: refused",
	} {
		if got := LastLines(in); got != want {
			t.Errorf("LastLines(%q) = %q, want %q", in, got, want)
		}
	}
}
