package envfwd

import (
	"os/exec"
	"strings"
	"testing"
)

func TestAllowlistSelect(t *testing.T) {
	a, err := ParseAllowlist([]string{"CI,NODE_OPTIONS", "APP_*", "*"})
	if err != nil {
		t.Fatal(err)
	}
	got := a.Select([]string{"CI=1", "APP_TOKEN=s3cret", "APPX=no", "HOME=/root", "NODE_OPTIONS=", "bad-name=x"})
	want := map[string]string{"CI": "1", "APP_TOKEN": "s3cret", "NODE_OPTIONS": ""}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, bad := range []string{"A-B", "1X", "$(x)", "A*B*"} {
		if _, err := ParseAllowlist([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseProfile(t *testing.T) {
	vars, skipped := ParseProfile(`# comment
export A=plain
B='single quoted $(not run)'
C="double \"q\" \\ back"
D=$(rm -rf /)
E=with space
F=` + "`id`" + `
1BAD=x
G=ok # trailing comment
`)
	want := map[string]string{"A": "plain", "C": `double "q" \ back`, "G": "ok"}
	for k, v := range want {
		if vars[k] != v {
			t.Errorf("%s = %q, want %q", k, vars[k], v)
		}
	}
	for _, k := range []string{"B", "D", "E", "F", "1BAD"} {
		if _, ok := vars[k]; ok {
			t.Errorf("%s should be skipped, got %q", k, vars[k])
		}
	}
	if len(skipped) != 5 {
		t.Errorf("skipped = %v", skipped)
	}
}

// Render's output, sourced by a real shell, reproduces hostile values
// literally and executes nothing.
func TestRenderIsLiteralInShell(t *testing.T) {
	vals := map[string]string{
		"Q1": `it's "quoted"`,
		"Q2": "$(touch /tmp/crabbox-pwned) `id` ${HOME}",
		"Q3": "line1\nline2",
		"Q4": "ünïcødé ✓",
		"Q5": strings.Repeat("x", 10000),
	}
	script := Render(vals) + `for k in Q1 Q2 Q3 Q4 Q5; do printf '%s\0' "${!k}"; done`
	out, err := exec.Command("bash", "-c", script).Output()
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	for i, k := range []string{"Q1", "Q2", "Q3", "Q4", "Q5"} {
		if parts[i] != vals[k] {
			t.Errorf("%s = %q, want %q", k, parts[i], vals[k])
		}
	}
}

func FuzzRenderRoundTrip(f *testing.F) {
	f.Add("plain")
	f.Add(`a'b"c$(d)` + "`e`\n")
	f.Fuzz(func(t *testing.T, v string) {
		if strings.ContainsRune(v, 0) {
			return
		}
		r := Render(map[string]string{"V": v})
		if !strings.HasPrefix(r, "export V='") || !strings.HasSuffix(r, "'\n") {
			t.Fatalf("render %q", r)
		}
		inner := strings.TrimSuffix(strings.TrimPrefix(r, "export V='"), "'\n")
		if strings.ReplaceAll(inner, `'\''`, "'") != v {
			t.Fatalf("round trip of %q", v)
		}
	})
}
