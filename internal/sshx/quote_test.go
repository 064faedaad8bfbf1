package sshx

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// hostile are strings a shell must never interpret.
var hostile = []string{
	"",
	" ",
	"plain",
	"two words",
	"it's",
	"''",
	`'\''`,
	`"double"`,
	`back\slash`,
	`trailing\`,
	"$HOME",
	"${HOME}",
	"$(touch pwned)",
	"`touch pwned`",
	"a;touch pwned",
	"a && touch pwned",
	"a | touch pwned",
	"> pwned",
	"*",
	"~",
	"#comment",
	"-n",
	"line1\nline2",
	"trailing newline\n",
	"\ttab",
	"\r\n",
	"ünïcödé ✓ 🦀",
	"!event",
	"a\x01b\x7f",
	"%s%%C",
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":           "''",
		"abc":        "'abc'",
		"it's":       `'it'\''s'`,
		"'":          `''\'''`,
		"$(x) `y`":   "'$(x) `y`'",
		"a\nb":       "'a\nb'",
		`back\slash`: `'back\slash'`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %q, want %q", in, got, want)
		}
	}
	if got, want := QuoteArgs([]string{"ls", "-l", "my file", ""}), `'ls' '-l' 'my file' ''`; got != want {
		t.Errorf("QuoteArgs = %q, want %q", got, want)
	}
	if got := QuoteArgs(nil); got != "" {
		t.Errorf("QuoteArgs(nil) = %q", got)
	}
}

func TestSplit(t *testing.T) {
	ok := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  \t\n ", nil},
		{"a b  c", []string{"a", "b", "c"}},
		{`'a b' ''`, []string{"a b", ""}},
		{`'it'\''s'`, []string{"it's"}},
		{`"a \"b\" \\ \$ c"`, []string{`a "b" \ $ c`}},
		{`"keep \n"`, []string{`keep \n`}},
		{`a\ b`, []string{"a b"}},
		{"a\\\nb", []string{"ab"}},
		{`x'y'"z"`, []string{"xyz"}},
		{`a#b c=d`, []string{"a#b", "c=d"}},
	}
	for _, tc := range ok {
		got, err := Split(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("Split(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{`'open`, `"open`, `trail\`, "a;b", "$x", "`x`", "a|b", "(x)", "*", "#c", "~", `"$x"`, "\"`x`\"", "a>b"} {
		if got, err := Split(bad); err == nil {
			t.Errorf("Split(%q) = %q, want an error", bad, got)
		}
	}
}

func TestQuoteRoundTrip(t *testing.T) {
	got, err := Split(QuoteArgs(hostile))
	if err != nil || !slices.Equal(got, hostile) {
		t.Fatalf("round trip = %q, %v", got, err)
	}
}

func FuzzQuoteRoundTrip(f *testing.F) {
	for _, h := range hostile {
		f.Add(h)
	}
	f.Add(strings.Join(hostile, "\x00"))
	f.Add("a\x00\x00b")
	f.Fuzz(func(t *testing.T, s string) {
		// NUL separates the words: argv can never hold NUL.
		var argv []string
		if s != "" {
			argv = strings.Split(s, "\x00")
		}
		line := QuoteArgs(argv)
		got, err := Split(line)
		if err != nil {
			t.Fatalf("Split(QuoteArgs(%q)) = error %v (line %q)", argv, err, line)
		}
		if !slices.Equal(got, argv) {
			t.Fatalf("round trip of %q = %q (line %q)", argv, got, line)
		}
	})
}

// TestQuoteRealShell checks with /bin/sh that a quoted word is printed
// literally, never expanded or executed.
func TestQuoteRealShell(t *testing.T) {
	dir := t.TempDir()
	for _, x := range hostile {
		cmd := exec.Command("sh", "-c", "printf '%s\\n' "+Quote(x))
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("sh for %q: %v", x, err)
		}
		if string(out) != x+"\n" {
			t.Errorf("sh printed %q for %q", out, x)
		}
	}
	// And all of them at once, as separate words.
	cmd := exec.Command("sh", "-c", "printf '%s\\0' "+QuoteArgs(hostile))
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00"); !slices.Equal(got, hostile) {
		t.Errorf("sh words = %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Fatal("a quoted word was executed")
	}
}
