package syncer

import (
	"strings"
	"testing"
)

// FuzzParseIgnoreFile: any .crabboxignore content parses and compiles
// without panicking; a plain name line (no glob, no "!", no "/") excludes
// that name at the root and below; protected paths stay excluded whatever
// the file says; matching hostile paths never panics.
func FuzzParseIgnoreFile(f *testing.F) {
	for _, s := range []string{
		"",
		"# comment\n*.log\n!keep.log\nbuild/\n/dist\n",
		"\\!bang\n\\#hash\n  \n\t\n",
		"node_modules\r\n!.crabbox/env\r\n!.crabbox\r\n",
		"[\n[a-\n\\\n**\n*/*/*\n",
		"../../etc/passwd\n./x\n.//y\n/\n.\n",
		"$(touch x)\n`id`\n日本語\n\xff\xfe\n",
		"a\x00b\n",
		strings.Repeat("a/", 5000) + "\n",
		strings.Repeat("*", 300) + "b\n",
	} {
		f.Add(s, "a/b/c.txt")
	}
	f.Fuzz(func(t *testing.T, data, rel string) {
		lines := ParseIgnoreFile([]byte(data))
		if want := strings.Count(strings.ReplaceAll(data, "\r\n", "\n"), "\n") + 1; len(lines) != want {
			t.Fatalf("%d lines, want %d", len(lines), want)
		}
		r := NewRules(nil, lines)
		for _, tr := range []bool{false, true} {
			if got, want := r.Excluded(rel, tr), excludedRef(r, rel, tr); got != want {
				t.Fatalf("Excluded(%q, %v) = %v, whole-path rules say %v, with %q", rel, tr, got, want, data)
			}
		}
		for _, l := range lines {
			_ = r.Excluded(strings.TrimSpace(l), false)
			name := strings.TrimRight(l, " \t\r")
			if name == "" || strings.TrimSpace(name) != name || strings.ContainsAny(name, "/*?[\\!#") || name == "." || name == ".." {
				continue
			}
			// A later "!" line may re-include it; only check when none does.
			if strings.Contains(data, "!") {
				continue
			}
			if !r.Excluded(name, false) || !r.Excluded("dir/"+name, false) || !r.Excluded(name+"/f", false) {
				t.Fatalf("plain line %q does not exclude %q", l, name)
			}
		}
		for _, d := range ProtectedDirs {
			for _, p := range []string{d, d + "/x", strings.ToUpper(d) + "/y"} {
				if !r.Excluded(p, true) {
					t.Fatalf("protected %q not excluded with %q", p, data)
				}
			}
		}
	})
}
