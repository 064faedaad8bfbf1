package lease

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

var normalizedSlugRe = regexp.MustCompile(`^([a-z0-9]+(-[a-z0-9]+)*)?$`)

func TestGeneratedSlugVectors(t *testing.T) {
	// Pinned once (and cross-checked against an independent FNV-1a-32
	// implementation): changing the tables or the hash changes these.
	tests := []struct{ id, want string }{
		{"cbx_4f1c2a9be310", "silver-crab"},
		{"cbx_000000000000", "coral-shrimp"},
		{"cbx_abcdefabcdef", "jade-crab"},
		{"cbx_123456789abc", "tidal-krill"},
	}
	for _, tt := range tests {
		if got := GeneratedSlug(tt.id); got != tt.want {
			t.Errorf("GeneratedSlug(%q) = %q, want %q", tt.id, got, tt.want)
		}
	}
}

func TestGeneratedSlugShape(t *testing.T) {
	adj := map[string]bool{}
	for _, a := range slugAdjectives {
		adj[a] = true
	}
	noun := map[string]bool{}
	for _, n := range slugNouns {
		noun[n] = true
	}
	if len(adj) != 14 || len(noun) != 8 {
		t.Fatalf("tables: %d adjectives, %d nouns", len(adj), len(noun))
	}
	for range 300 {
		id := NewLeaseID()
		s := GeneratedSlug(id)
		a, n, ok := strings.Cut(s, "-")
		if !ok || !adj[a] || !noun[n] {
			t.Fatalf("GeneratedSlug(%q) = %q", id, s)
		}
		if NormalizeSlug(s) != s || len(s) > MaxSlugLen {
			t.Fatalf("GeneratedSlug(%q) = %q is not a valid slug", id, s)
		}
	}
}

func TestNormalizeSlug(t *testing.T) {
	tests := []struct{ in, want string }{
		{"blue-lobster", "blue-lobster"},
		{"Blue_Lobster", "blue-lobster"},
		{"BLUE LOBSTER", "blue-lobster"},
		{"  blue   lobster  ", "blue-lobster"},
		{"--blue--lobster--", "blue-lobster"},
		{"blue.lobster/2", "blue-lobster-2"},
		{"a", "a"},
		{"42", "42"},
		{"", ""},
		{"   ", ""},
		{"---", ""},
		{"_.-/ ", ""},
		{"Crabbox-Dev_Box 01", "crabbox-dev-box-01"},
		{"crème brûlée", "cr-me-br-l-e"},
		{"\u212a", "k"}, // Kelvin sign lowercases to k
		{"x\ty\nz", "x-y-z"},
		{"!!!", ""},
		{"a/b", "a-b"},
		{"héllo wörld", "h-llo-w-rld"},
		{"cbx_4f1c2a9be310", "cbx-4f1c2a9be310"},
		{"\xff\xfeab\xc3", "ab"}, // invalid UTF-8 bytes are other characters
	}
	for _, tt := range tests {
		if got := NormalizeSlug(tt.in); got != tt.want {
			t.Errorf("NormalizeSlug(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNormalizeSlugHostile(t *testing.T) {
	tests := []string{
		`"; rm -rf / #`,
		`'quoted'`,
		"$(touch /tmp/pwned)",
		"`id`",
		"a\nb\r\nc",
		"../../etc/passwd",
		`..\..\windows`,
		"\x00nul\x00byte",
		"\x1b[31mred\x1b[0m",
		"日本語スラッグ",
		"🦀 crab 🦀",
		"\xff\xfe invalid utf8",
		"%2e%2e%2f",
		"${HOME}",
		"a|b&c;d>e<f",
		strings.Repeat("a-", 5000),
		strings.Repeat("$(x)", 2560),
		strings.Repeat("é", 5000),
		strings.Repeat("\U0001F980", 2600),
	}
	for _, in := range tests {
		got := NormalizeSlug(in)
		if !normalizedSlugRe.MatchString(got) {
			t.Errorf("NormalizeSlug(%.40q) = %.60q: not [a-z0-9-] normalized", in, got)
		}
		if again := NormalizeSlug(got); again != got {
			t.Errorf("NormalizeSlug not idempotent on %.40q: %.60q -> %.60q", in, got, again)
		}
		// ValidateSlug must never panic either.
		_, _ = ValidateSlug(in)
	}
}

func FuzzNormalizeSlug(f *testing.F) {
	for _, s := range []string{"", "Blue_Lobster", "BLUE LOBSTER", "--x--", "$(id)", "../..", "日本", "\xff", "\u212a", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := NormalizeSlug(s)
		if !normalizedSlugRe.MatchString(got) {
			t.Fatalf("NormalizeSlug(%q) = %q", s, got)
		}
		if again := NormalizeSlug(got); again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, got, again)
		}
	})
}

func TestValidateSlug(t *testing.T) {
	ok := []struct{ in, want string }{
		{"Blue_Lobster", "blue-lobster"},
		{"x", "x"},
		{strings.Repeat("a", 41), strings.Repeat("a", 41)},
		{"  " + strings.Repeat("b", 41) + "---", strings.Repeat("b", 41)},
	}
	for _, tt := range ok {
		got, err := ValidateSlug(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ValidateSlug(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	bad := []struct{ in, msg string }{
		{"", "--slug must contain at least one letter or digit"},
		{"  --  ", "--slug must contain at least one letter or digit"},
		{"日本語", "--slug must contain at least one letter or digit"},
		{strings.Repeat("a", 42), "--slug must be at most 41 characters after normalization"},
		{strings.Repeat("ab-", 15), "--slug must be at most 41 characters after normalization"},
	}
	for _, tt := range bad {
		_, err := ValidateSlug(tt.in)
		if err == nil {
			t.Errorf("ValidateSlug(%q): no error", tt.in)
			continue
		}
		if err.Error() != tt.msg {
			t.Errorf("ValidateSlug(%q) error = %q, want %q", tt.in, err, tt.msg)
		}
		if code := exitcode.Code(err); code != exitcode.Usage {
			t.Errorf("ValidateSlug(%q) exit code = %d, want 2", tt.in, code)
		}
	}
}

func TestAllocateSlug(t *testing.T) {
	const id = "cbx_4f1c2a9be310"
	set := func(taken ...string) func(string) bool {
		m := map[string]bool{}
		for _, s := range taken {
			m[s] = true
		}
		return func(s string) bool { return m[s] }
	}
	// Candidates for id: attempt 1 -> 951a, attempt 3 -> 91f4 (pinned).
	tests := []struct {
		name  string
		base  string
		inUse func(string) bool
		want  string
	}{
		{"free base", "blue-lobster", set(), "blue-lobster"},
		{"nil inUse", "blue-lobster", nil, "blue-lobster"},
		{"base normalized", "Blue Lobster", set(), "blue-lobster"},
		{"empty base uses generated", "", set(), "silver-crab"},
		{"taken base", "blue-lobster", set("blue-lobster"), "blue-lobster-951a"},
		{"long base truncated", strings.Repeat("a", 60), set(), strings.Repeat("a", 41)},
		{"long base trailing dash trimmed", strings.Repeat("a", 40) + "-bbb", set(), strings.Repeat("a", 40)},
		{"long taken base keeps candidate in 41", strings.Repeat("a", 41), set(strings.Repeat("a", 41)), strings.Repeat("a", 36) + "-951a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AllocateSlug(tt.base, id, tt.inUse)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("AllocateSlug(%q) = %q, want %q", tt.base, got, tt.want)
			}
			if len(got) > MaxSlugLen || NormalizeSlug(got) != got {
				t.Fatalf("AllocateSlug(%q) = %q: not a valid slug", tt.base, got)
			}
		})
	}
}

func TestAllocateSlugSequence(t *testing.T) {
	const id = "cbx_4f1c2a9be310"
	var asked []string
	n := 0
	got, err := AllocateSlug("blue-lobster", id, func(s string) bool {
		asked = append(asked, s)
		n++
		return n <= 3 // base, attempt 1, attempt 2 taken
	})
	if err != nil || got != "blue-lobster-91f4" {
		t.Fatalf("got %q, %v; asked %q", got, err, asked)
	}

	// Everything but the fallback taken.
	asked = nil
	got, err = AllocateSlug("blue-lobster", id, func(s string) bool {
		asked = append(asked, s)
		return s != "silver-crab-4f1c2a"
	})
	if err != nil || got != "silver-crab-4f1c2a" {
		t.Fatalf("fallback: got %q, %v", got, err)
	}
	if len(asked) != 1+20+1 {
		t.Fatalf("asked %d candidates, want 22: %q", len(asked), asked)
	}
	for _, c := range asked[1:21] {
		if !regexp.MustCompile(`^blue-lobster-[0-9a-f]{4}$`).MatchString(c) {
			t.Fatalf("bad candidate %q", c)
		}
	}

	// Non-canonical lease ID: fallback hex comes from SHA-1 of the ID.
	got, err = AllocateSlug("x", "legacy-20260101", func(s string) bool { return !strings.HasPrefix(s, GeneratedSlug("legacy-20260101")) })
	if err != nil || !regexp.MustCompile(`^[a-z]+-[a-z]+-[0-9a-f]{6}$`).MatchString(got) {
		t.Fatalf("non-canonical fallback: %q, %v", got, err)
	}
}

func TestAllocateSlugExhausted(t *testing.T) {
	_, err := AllocateSlug("blue-lobster", "cbx_4f1c2a9be310", func(string) bool { return true })
	if err == nil || err.Error() != "could not allocate a unique lease slug" {
		t.Fatalf("err = %v", err)
	}
	var ee *exitcode.Error
	if !errors.As(err, &ee) || exitcode.Code(err) != exitcode.Usage {
		t.Fatalf("exit code = %d, want 2", exitcode.Code(err))
	}
}
