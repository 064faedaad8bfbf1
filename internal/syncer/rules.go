package syncer

import (
	"path"
	"strings"
)

// builtinExcludes are the built-in exclude rules, in order.
var builtinExcludes = []string{
	".git", "._*", "node_modules", ".ignored", ".turbo", ".next",
	".vite", ".parcel-cache", ".rollup.cache", "dist", "dist-runtime",
	"coverage", "playwright-report", "test-results", ".cache", ".tmp", ".local",
	".swiftpm", ".build", "apps/*/.build", ".pnpm-store", ".npm", ".yarn/cache",
	".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
	".gradle", "target",
}

// ambiguousExcludes are the built-ins that name build outputs which some
// repositories commit on purpose: they never drop tracked regular files.
var ambiguousExcludes = map[string]bool{
	"dist": true, "dist-runtime": true, "coverage": true, "playwright-report": true,
	"test-results": true, ".build": true, "apps/*/.build": true, "target": true,
}

// ProtectedDirs are the remote directories crabbox owns inside a workdir.
// Paths under them are never synced, whatever the other rules say, and
// they are compared case-insensitively (ASCII).
var ProtectedDirs = []string{
	".crabbox/env", ".crabbox/scripts", ".crabbox/logs",
	".crabbox/captures", ".crabbox/runs", ".crabbox/sync",
}

// Rules is a compiled, ordered exclude list: built-ins, then
// the configured excludes, then .crabboxignore lines, then the protected
// directories. The last rule that matches a path decides; a rule written
// "!pat" re-includes; "\!pat" is a literal "!pat" (and "\#pat" a literal
// "#pat"). A pattern without "/" matches any path segment (a name or a
// path.Match glob); a pattern with "/" matches the whole relative path or
// one of its leading directories (again literally or as a glob). A leading
// "/" only anchors (patterns with "/" are anchored anyway), and a trailing
// "/" makes the pattern match directories only.
//
// A Rules is not safe for concurrent use: it remembers, per directory,
// which rules match the directory part of a path (a manifest asks about
// every file of a directory in turn).
type Rules struct {
	rules []rule
	dirs  map[string]dirHit
	// The last directory looked up and its hit: paths come in order, so
	// most lookups are for the directory of the path before.
	lastDir    string
	lastDirHit dirHit
	lastDirOK  bool
	// The rules that can match a path's last part: plain names (no glob,
	// no "/") by name, as a dirHit-like pair of highest indexes, and the
	// others' indexes, highest first.
	names map[string]dirHit
	last  []int
}

// dirHit is, for one directory, the highest index of a rule matching a
// path's directory part there, -1 for none: [0] over every rule, [1]
// leaving out the ambiguous ones (for tracked regular files).
type dirHit [2]int

type rule struct {
	pat       string
	neg       bool
	anchored  bool // has a "/": matched against the path and its leading dirs
	dirOnly   bool // trailing "/": never matches the last segment
	glob      bool // has glob metacharacters and is a valid path.Match pattern
	lit       string
	fold      bool // ASCII case-insensitive (protected rules; pat is lower case)
	ambiguous bool // skipped for tracked regular files
}

// NewRules compiles the built-ins, exclude (config) and crabboxignore (the
// lines of .crabboxignore; blank and "#" lines are ignored) plus the
// protected rules.
func NewRules(exclude, crabboxignore []string) *Rules {
	r := &Rules{}
	for _, p := range builtinExcludes {
		if ru, ok := compileRule(p); ok {
			ru.ambiguous = ambiguousExcludes[p]
			r.rules = append(r.rules, ru)
		}
	}
	for _, p := range exclude {
		if ru, ok := compileRule(p); ok {
			r.rules = append(r.rules, ru)
		}
	}
	for _, line := range crabboxignore {
		line = strings.TrimRight(line, " \t\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if ru, ok := compileRule(line); ok {
			r.rules = append(r.rules, ru)
		}
	}
	for _, p := range ProtectedDirs {
		r.rules = append(r.rules, rule{pat: p, lit: p, anchored: true, fold: true})
	}
	r.names = map[string]dirHit{}
	for i := len(r.rules) - 1; i >= 0; i-- {
		ru := &r.rules[i]
		switch {
		case ru.dirOnly:
		case !ru.glob && !ru.anchored && !ru.fold:
			h, ok := r.names[ru.pat]
			if !ok {
				h = dirHit{i, -1}
			}
			if h[1] < 0 && !ru.ambiguous {
				h[1] = i
			}
			r.names[ru.pat] = h
		default:
			r.last = append(r.last, i)
		}
	}
	return r
}

// ParseIgnoreFile splits .crabboxignore content into lines for NewRules.
func ParseIgnoreFile(data []byte) []string {
	return strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
}

func compileRule(p string) (rule, bool) {
	var ru rule
	p = strings.TrimSpace(p)
	switch {
	case strings.HasPrefix(p, `\!`), strings.HasPrefix(p, `\#`):
		p = p[1:]
	case strings.HasPrefix(p, "!"):
		ru.neg = true
		p = p[1:]
	}
	if strings.HasSuffix(p, "/") {
		ru.dirOnly = true
	}
	if strings.HasPrefix(p, "/") {
		ru.anchored = true
	}
	p = strings.Trim(p, "/")
	for strings.HasPrefix(p, "./") {
		p = strings.TrimLeft(p[2:], "/")
	}
	if p == "" || p == "." {
		return rule{}, false
	}
	if strings.Contains(p, "/") {
		ru.anchored = true
	}
	ru.pat = p
	if strings.ContainsAny(p, `*?[\`) {
		if _, err := path.Match(p, ""); err == nil {
			ru.glob = true
		}
	}
	if ru.glob {
		// The literal part before the first metacharacter: a cheap pre-check.
		ru.lit = p[:strings.IndexAny(p, `*?[\`)]
	} else {
		ru.lit = p
	}
	return ru, true
}

// Excluded reports whether p (a clean, slash-separated path relative to
// the repository root) is left out of the sync. trackedRegular says p is a
// tracked regular file (ambiguous built-ins then do not apply).
//
// A rule matches p through p's directory part (a segment of it, or one of
// its leading directories: the same for every file of that directory, so
// remembered) or through its last part (the name, or the whole path for an
// anchored rule); the highest rule that matches decides.
func (r *Rules) Excluded(p string, trackedRegular bool) bool {
	dir, base := "", p
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		dir, base = p[:i], p[i+1:]
	}
	best := -1
	if dir != "" {
		hit := r.dirHit(dir)
		if trackedRegular {
			best = hit[1]
		} else {
			best = hit[0]
		}
	}
	if h, ok := r.names[base]; ok {
		if trackedRegular {
			best = max(best, h[1])
		} else {
			best = max(best, h[0])
		}
	}
	for _, i := range r.last {
		if i <= best {
			break
		}
		ru := &r.rules[i]
		if ru.ambiguous && trackedRegular {
			continue
		}
		if ru.matchLast(p, base) {
			best = i
			break
		}
	}
	return best >= 0 && !r.rules[best].neg
}

// dirHit is the remembered dirHit of dir (a path's directory part).
func (r *Rules) dirHit(dir string) dirHit {
	if r.lastDirOK && r.lastDir == dir {
		return r.lastDirHit
	}
	h := r.lookupDir(dir)
	r.lastDir, r.lastDirHit, r.lastDirOK = dir, h, true
	return h
}

func (r *Rules) lookupDir(dir string) dirHit {
	if h, ok := r.dirs[dir]; ok {
		return h
	}
	h := dirHit{-1, -1}
	for i := len(r.rules) - 1; i >= 0 && h[1] < 0; i-- {
		ru := &r.rules[i]
		if !ru.matchDir(dir) {
			continue
		}
		if h[0] < 0 {
			h[0] = i
		}
		if !ru.ambiguous {
			h[1] = i
		}
	}
	if r.dirs == nil {
		r.dirs = map[string]dirHit{}
	}
	r.dirs[dir] = h
	return h
}

// Protected reports whether p lies in (or is) a protected directory.
func Protected(p string) bool {
	for _, d := range ProtectedDirs {
		if hasDirPrefixFold(p, d) {
			return true
		}
	}
	return false
}

// matchDir reports whether the rule matches a path in dir through dir: a
// protected rule when dir is in (or is) its directory, an unanchored rule
// when a segment of dir matches it, an anchored one when dir or one of
// its leading directories does.
func (ru *rule) matchDir(dir string) bool {
	if ru.fold {
		return hasDirPrefixFold(dir, ru.pat)
	}
	if !ru.anchored {
		for rest := dir; ; {
			seg, tail, more := strings.Cut(rest, "/")
			if ru.matchOne(seg) {
				return true
			}
			if !more {
				return false
			}
			rest = tail
		}
	}
	for i := 0; ; {
		j := strings.IndexByte(dir[i:], '/')
		if j < 0 {
			return ru.matchOne(dir)
		}
		if ru.matchOne(dir[:i+j]) {
			return true
		}
		i += j + 1
	}
}

// matchLast reports whether the rule matches p (whose last segment is
// base) through its last part: never for a directory-only rule; the whole
// path for a protected or anchored rule, the name for any other.
func (ru *rule) matchLast(p, base string) bool {
	switch {
	case ru.dirOnly:
		return false
	case ru.fold:
		return len(p) == len(ru.pat) && hasDirPrefixFold(p, ru.pat)
	case ru.anchored:
		return ru.matchOne(p)
	}
	return ru.matchOne(base)
}

func (ru *rule) matchOne(s string) bool {
	if !ru.glob {
		return s == ru.pat
	}
	if !strings.HasPrefix(s, ru.lit) {
		return false
	}
	ok, _ := path.Match(ru.pat, s)
	return ok
}

// hasDirPrefixFold reports whether p equals dir or starts with dir + "/",
// comparing ASCII letters case-insensitively. dir must be lower case.
func hasDirPrefixFold(p, dir string) bool {
	if len(p) < len(dir) || (len(p) > len(dir) && p[len(dir)] != '/') {
		return false
	}
	for i := 0; i < len(dir); i++ {
		c := p[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != dir[i] {
			return false
		}
	}
	return true
}
