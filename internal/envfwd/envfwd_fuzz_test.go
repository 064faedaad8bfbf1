package envfwd

import (
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// FuzzParseProfile: ParseProfile never panics; every accepted name is a
// valid shell name; every accepted value is free of $( backticks and NUL
// and survives Render's quoting unchanged; skipped entries carry names or
// line numbers, never values.
func FuzzParseProfile(f *testing.F) {
	for _, s := range []string{
		"",
		"A=1\nexport B='two words'\n# comment\nC=\"q\\\"uote\\\\\"\n",
		"X=$(id)\nY=`id`\nZ='$(id)'\n",
		"BAD NAME=1\n9X=1\n=1\nexport\n",
		"K=v #comment\nK2=v#x\nK3=\"a\" \r\n",
		"K='it'\\''s'\n",
		"K=a\x00b\nL='\x00'\n",
		"K=\"\xff\xfe\"\nU=日本語\n",
		"export  SPACED = val \n\tTAB=1\t\n",
		"K=\"unterminated\nK='x\n",
		"K=" + strings.Repeat("y", 10*1024) + "\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		vars, skipped := ParseProfile(data)
		for k, v := range vars {
			if !ValidName(k) {
				t.Fatalf("accepted bad name %q", k)
			}
			if strings.Contains(v, "$(") || strings.Contains(v, "`") || strings.ContainsRune(v, 0) {
				t.Fatalf("accepted unsafe value for %s: %q", k, v)
			}
			if strings.ContainsAny(v, "\n") {
				t.Fatalf("value of %s spans lines: %q", k, v)
			}
			r := Render(map[string]string{k: v})
			inner := strings.TrimSuffix(strings.TrimPrefix(r, "export "+k+"='"), "'\n")
			if strings.ReplaceAll(inner, `'\''`, "'") != v {
				t.Fatalf("render round trip of %s=%q: %q", k, v, r)
			}
		}
		for _, s := range skipped {
			if !ValidName(s) && !strings.HasPrefix(s, "line ") {
				t.Fatalf("skipped entry %q is neither a name nor a line number", s)
			}
		}
	})
}

// TestParseProfileHostile: hostile profile lines are either accepted and
// reach a real bash (Render, sourced) byte for byte, or skipped; nothing
// is ever executed.
func TestParseProfileHostile(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	canary := t.TempDir() + "/pwned"
	cases := []struct {
		line   string
		name   string
		want   string // accepted value ("" with skip=true: skipped)
		skip   bool
		absent bool // neither accepted nor reported under name (a bad-name line)
	}{
		{line: `A=plain`, name: "A", want: "plain"},
		{line: `A='single $HOME ${X} \n'`, name: "A", want: `single $HOME ${X} \n`},
		{line: `A="dq \"x\" \\ $HOME"`, name: "A", want: `dq "x" \ $HOME`},
		{line: `A=$(touch ` + canary + `)`, name: "A", skip: true},
		{line: `A='$(touch ` + canary + `)'`, name: "A", skip: true},
		{line: "A=`touch " + canary + "`", name: "A", skip: true},
		{line: `A="$(touch ` + canary + `)"`, name: "A", skip: true},
		{line: `A=a;touch ` + canary, name: "A", skip: true},
		{line: `A=a&&touch` + canary, name: "A", want: "a&&touch" + canary},
		{line: `A=x|y>z<w`, name: "A", want: "x|y>z<w"},
		{line: `A='it'\''s'`, name: "A", skip: true},
		{line: `A='a'b'`, name: "A", skip: true},
		{line: `A="a"b"`, name: "A", skip: true},
		{line: `A=../../etc/passwd`, name: "A", want: "../../etc/passwd"},
		{line: "A=ünïcødé✓\u202e", name: "A", want: "ünïcødé✓\u202e"},
		{line: "A='\xff\xfe'", name: "A", want: "\xff\xfe"},
		{line: "A=a\x00b", name: "A", skip: true},
		{line: "A='\x00'", name: "A", skip: true},
		{line: "A='x\ry'", name: "A", want: "x\ry"},
		{line: "A=" + strings.Repeat("Z", 10*1024), name: "A", want: strings.Repeat("Z", 10*1024)},
		{line: "A='" + strings.Repeat("'\\''", 2000) + "'", name: "A", skip: true},
		{line: `export A=exported`, name: "A", want: "exported"},
		{line: `A=`, name: "A", want: ""},
		{line: `A=''`, name: "A", want: ""},
		{line: `A=v # trailing comment`, name: "A", want: "v"},
		{line: `$(touch ` + canary + `)=1`, absent: true},
		{line: `A B=1`, absent: true},
		{line: `A-B=1`, absent: true},
		{line: `1A=1`, absent: true},
		{line: `Ä=1`, absent: true},
	}
	var accepted []struct{ name, want string }
	for _, c := range cases {
		vars, skipped := ParseProfile(c.line + "\n")
		v, ok := vars[c.name]
		switch {
		case c.absent:
			if len(vars) != 0 || len(skipped) != 1 || skipped[0] != "line 1" {
				t.Errorf("%q: vars %q skipped %q, want only line 1 skipped", c.line, vars, skipped)
			}
		case c.skip:
			if ok || len(skipped) != 1 || skipped[0] != c.name {
				t.Errorf("%q: got %q (accepted=%v), skipped %q; want skipped", c.line, v, ok, skipped)
			}
		default:
			if !ok || v != c.want {
				t.Errorf("%q: got %q (accepted=%v), want %q", c.line, v, ok, c.want)
				continue
			}
			accepted = append(accepted, struct{ name, want string }{c.name, c.want})
		}
		for _, s := range skipped {
			if s != c.name && !strings.HasPrefix(s, "line ") {
				t.Errorf("%q: skipped entry %q leaks more than a name", c.line, s)
			}
		}
	}
	// Every accepted value, sourced by a real bash from Render's output,
	// arrives literally.
	vars := map[string]string{}
	var names []string
	for i, a := range accepted {
		n := a.name + "_" + strings.Repeat("X", i)
		vars[n] = a.want
		names = append(names, n)
	}
	sort.Strings(names)
	script := Render(vars) + `for k in ` + strings.Join(names, " ") + `; do printf '%s\0' "${!k}"; done`
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = t.TempDir()
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(got) != len(names) {
		t.Fatalf("got %d values, want %d", len(got), len(names))
	}
	for i, n := range names {
		if got[i] != vars[n] {
			t.Errorf("%s: bash saw %q, want %q", n, got[i], vars[n])
		}
	}
	if _, err := exec.Command("test", "-e", canary).CombinedOutput(); err == nil {
		t.Fatal("a profile value was executed")
	}
}
