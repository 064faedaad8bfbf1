package syncer

import (
	"os"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	// Keep the developer's git config out of the tests.
	os.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
	os.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	code := m.Run()
	cleanupBench()
	os.Exit(code)
}

func TestRules(t *testing.T) {
	tests := []struct {
		name    string
		exclude []string
		ignore  []string
		path    string
		tracked bool // tracked regular file
		want    bool // excluded
	}{
		{"plain file", nil, nil, "src/main.go", false, false},
		{".git anywhere", nil, nil, "sub/.git/config", false, true},
		{"node_modules nested", nil, nil, "web/node_modules/x/index.js", true, true},
		{"node_modules tracked still dropped", nil, nil, "node_modules/a.js", true, true},
		{"._ glob", nil, nil, "docs/._foo.md", false, true},
		{"._ glob needs prefix", nil, nil, "docs/a._foo.md", false, false},
		{"yarn cache anchored", nil, nil, ".yarn/cache/x.zip", false, true},
		{"yarn cache not nested", nil, nil, "pkg/.yarn/cache/x.zip", false, false},
		{"apps glob build", nil, nil, "apps/web/.build/out", false, true},
		{"dist untracked dropped", nil, nil, "dist/app.js", false, true},
		{"dist tracked kept", nil, nil, "dist/app.js", true, false},
		{"target tracked kept", nil, nil, "rust/target/x", true, false},
		{"apps build tracked kept", nil, nil, "apps/a/.build/x", true, false},
		{"cache tracked dropped", nil, nil, ".cache/x", true, true},
		{"name match not substring", nil, nil, "distribution/a", false, false},
		{"exclude drops tracked", []string{"docs"}, nil, "docs/a.md", true, true},
		{"exclude glob segment", []string{"*.log"}, nil, "a/b/c.log", false, true},
		{"exclude slash glob", []string{"src/*.gen.go"}, nil, "src/a.gen.go", false, true},
		{"exclude slash glob not deeper", []string{"src/*.gen.go"}, nil, "src/x/a.gen.go", false, false},
		{"exclude prefix dir", []string{"assets/big"}, nil, "assets/big/x/y.bin", false, true},
		{"exclude prefix is whole segment", []string{"assets/big"}, nil, "assets/bigger/y.bin", false, false},
		{"leading slash anchors", []string{"/tmpdata"}, nil, "sub/tmpdata/x", false, false},
		{"leading slash matches root", []string{"/tmpdata"}, nil, "tmpdata/x", false, true},
		{"trailing slash dir only", []string{"out/"}, nil, "out", false, false},
		{"trailing slash dir", []string{"out/"}, nil, "a/out/b", false, true},
		{"re-include built-in", []string{"!node_modules"}, nil, "node_modules/a.js", false, false},
		{"re-include later wins", []string{"!dist"}, nil, "dist/a.js", false, false},
		{"last match wins", []string{"*.txt", "!keep.txt"}, nil, "a/keep.txt", false, false},
		{"last match wins reverse", []string{"!keep.txt", "*.txt"}, nil, "a/keep.txt", false, true},
		{"escaped bang literal", []string{`\!important`}, nil, "!important", false, true},
		{"escaped bang not negation", []string{`\!important`}, nil, "important", false, false},
		{"crabboxignore after config", []string{"!secret.txt"}, []string{"secret.txt"}, "secret.txt", false, true},
		{"crabboxignore comment", nil, []string{"# secret.txt", "", "   "}, "secret.txt", false, false},
		{"crabboxignore re-include", nil, []string{"!.cache"}, ".cache/x", false, false},
		{"bad glob is literal", []string{"[abc"}, nil, "[abc", false, true},
		{"bad glob no panic", []string{"[abc"}, nil, "a", false, false},
		{"question mark", []string{"?.tmp"}, nil, "x/a.tmp", false, true},
		{"protected", nil, nil, ".crabbox/env/run.env", false, true},
		{"protected dir itself", nil, nil, ".crabbox/sync", false, true},
		{"protected case-insensitive", nil, nil, ".CrabBox/Scripts/a.sh", false, true},
		{"protected cannot be re-included", []string{"!.crabbox/env", "!*"}, []string{"!.crabbox/env/run.env"}, ".crabbox/env/run.env", true, true},
		{"protected only at root", nil, nil, "sub/.crabbox/env/x", false, false},
		{"crabbox config not protected", nil, nil, ".crabbox/config.yaml", false, false},
		{"protected needs segment", nil, nil, ".crabbox/environment", false, false},
	}
	for _, tc := range tests {
		r := NewRules(tc.exclude, tc.ignore)
		if got := r.Excluded(tc.path, tc.tracked); got != tc.want {
			t.Errorf("%s: Excluded(%q, tracked=%v) with exclude=%q ignore=%q = %v, want %v",
				tc.name, tc.path, tc.tracked, tc.exclude, tc.ignore, got, tc.want)
		}
	}
}

func TestParseIgnoreFile(t *testing.T) {
	got := ParseIgnoreFile([]byte("a\r\n# c\n\nb  \n"))
	r := NewRules(nil, got)
	if !r.Excluded("a", false) || !r.Excluded("x/b", false) || r.Excluded("# c", false) {
		t.Errorf("ParseIgnoreFile lines %q misapplied", got)
	}
}

// FuzzRules: rule compilation and matching never panic, and a protected
// path is excluded whatever the other rules say.
func FuzzRules(f *testing.F) {
	f.Add("node_modules", "!*", "a/b.txt", byte(0), uint16(0), false)
	f.Add(`\!x`, "[", ".crabbox/env", byte(1), uint16(5), true)
	f.Add("a/*/b/", "!.crabbox", "x/y", byte(5), uint16(0xffff), false)
	f.Add("/", "!/.crabbox/sync/", "", byte(3), uint16(3), true)
	f.Fuzz(func(t *testing.T, p1, p2, rel string, which byte, caseBits uint16, tracked bool) {
		r := NewRules([]string{p1, "!" + p1, p2}, []string{p2, "!" + rel, "!*", "!.crabbox/*", "!" + strings.ToUpper(rel)})
		_ = r.Excluded(rel, tracked) // must not panic

		// A protected path in random ASCII case, optionally with a tail.
		d := []byte(ProtectedDirs[int(which)%len(ProtectedDirs)])
		for i := range d {
			if caseBits&(1<<(i%16)) != 0 && 'a' <= d[i] && d[i] <= 'z' {
				d[i] -= 'a' - 'A'
			}
		}
		p := string(d)
		if tail := strings.Trim(rel, "/"); tail != "" {
			p += "/" + tail
		}
		if !Protected(p) {
			t.Fatalf("Protected(%q) = false", p)
		}
		r2 := NewRules([]string{p1, "!" + p1, "!" + p, "!*"}, []string{"!" + p, "!" + strings.ToLower(p), "!" + p2})
		if !r2.Excluded(p, tracked) {
			t.Fatalf("protected path %q survived rules %q %q", p, p1, p2)
		}
	})
}

// excludedRef is Excluded without the per-directory split: every rule
// matched against the whole path, the last match deciding.
func excludedRef(r *Rules, p string, trackedRegular bool) bool {
	for i := len(r.rules) - 1; i >= 0; i-- {
		ru := &r.rules[i]
		if ru.ambiguous && trackedRegular {
			continue
		}
		if refMatch(ru, p) {
			return !ru.neg
		}
	}
	return false
}

func refMatch(ru *rule, p string) bool {
	if ru.fold {
		return hasDirPrefixFold(p, ru.pat)
	}
	segs := strings.Split(p, "/")
	if !ru.anchored {
		for i, seg := range segs {
			if ru.dirOnly && i == len(segs)-1 {
				return false
			}
			if ru.matchOne(seg) {
				return true
			}
		}
		return false
	}
	for i := 1; i <= len(segs); i++ {
		if i == len(segs) && ru.dirOnly {
			return false
		}
		if ru.matchOne(strings.Join(segs[:i], "/")) {
			return true
		}
	}
	return false
}

// TestExcludedMatchesWholePathRules: the per-directory split gives the
// same answer as matching each rule against the whole path, for every
// kind of rule, asked in an order that reuses remembered directories.
func TestExcludedMatchesWholePathRules(t *testing.T) {
	ruleSets := [][]string{
		nil,
		{"docs", "!docs/keep", "*.log", "!keep.log", "out/", "/tmpdata", "src/*.gen.go", "assets/big"},
		{"!dist", "!node_modules", "dist/", "a/b", "!a/b/c", "**", "!*.go"},
		{"[a-c]*", "!b*", "x/*/y", "y/", "!.crabbox/env", "!.crabbox"},
	}
	paths := []string{
		"a", "a/b", "a/b/c", "a/b/c/d.go", "a/b/c.log", "docs/a.md", "docs/keep", "docs/keep/x",
		"dist/app.js", "web/dist/x/y", "out", "out/x", "a/out/b", "tmpdata/x", "sub/tmpdata/x",
		"src/a.gen.go", "src/x/a.gen.go", "assets/big/x", "assets/bigger/y", "node_modules/a.js",
		"x/q/y", "x/q/y/z", "x/q/yy", "y", "y/z", ".crabbox/env", ".crabbox/env/k", ".CRABBOX/Env/k",
		".crabbox", ".crabbox/other", "apps/w/.build/o", "apps/w/.build", "target", "rust/target/x",
		"._x", "d/._x", "keep.log", "b/keep.log", "c.go", "b/c.go", "bb/a", ".git", "s/.git/config",
	}
	for _, rs := range ruleSets {
		r := NewRules(rs, []string{"# c", "!docs/keep/x", "cache/"})
		for pass := range 2 { // the second pass answers from remembered directories
			for _, p := range paths {
				for _, tr := range []bool{false, true} {
					if got, want := r.Excluded(p, tr), excludedRef(r, p, tr); got != want {
						t.Errorf("rules %q pass %d: Excluded(%q, %v) = %v, whole-path rules say %v", rs, pass, p, tr, got, want)
					}
				}
			}
		}
	}
}
