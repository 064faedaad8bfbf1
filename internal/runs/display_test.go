package runs

import "testing"

func TestQuoteWordAndCommandLine(t *testing.T) {
	for in, want := range map[string]string{
		"":          "''",
		"go":        "go",
		"./...":     "./...",
		"a=b,c@d%e": "a=b,c@d%e",
		"ünï":       "ünï",
		"a b":       "'a b'",
		"it's":      `'it'\''s'`,
		"$(id)":     "'$(id)'",
	} {
		if got := QuoteWord(in); got != want {
			t.Errorf("QuoteWord(%q) = %s, want %s", in, got, want)
		}
	}
	if got := CommandLine([]string{"echo", "a b", "x\ny"}, false); got != `echo 'a b' 'x\ny'` {
		t.Errorf("argv CommandLine = %s", got)
	}
	if got := CommandLine([]string{"pnpm i && pnpm test"}, true); got != "pnpm i && pnpm test" {
		t.Errorf("shell CommandLine = %s", got)
	}
	if got := CommandLine(nil, false); got != "-" {
		t.Errorf("empty CommandLine = %s", got)
	}
}
