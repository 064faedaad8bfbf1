package gitrepo

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"strings"
)

// entry is one "key = value" of a git config file.
type entry struct {
	section string // lower case
	sub     string // subsection, case kept ("" for none)
	key     string // lower case
	value   string
}

// readConfig reads a git config file the plain way most are written: a
// missing file has no entries. ok is false for anything it does not take
// apart exactly as git would: an include, quotes or backslashes (escapes,
// line continuations), inline comments, a key on a section's line, a
// line it cannot read.
func readConfig(name string) (entries []entry, ok bool) {
	data, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, true
	}
	if err != nil || bytes.IndexByte(data, 0) >= 0 {
		return nil, false
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	section, sub := "", ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(strings.TrimSuffix(sc.Text(), "\r"))
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			var ok bool
			if section, sub, ok = parseSection(line); !ok {
				return nil, false
			}
			if section == "include" || section == "includeif" {
				return nil, false
			}
			continue
		}
		if section == "" || strings.ContainsAny(line, "\"\\#;") {
			return nil, false
		}
		key, value, hasValue := strings.Cut(line, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		if !validKey(key) {
			return nil, false
		}
		value = strings.TrimSpace(value)
		if !hasValue {
			value = "true" // a bare key is boolean true
		}
		entries = append(entries, entry{section: section, sub: sub, key: key, value: value})
	}
	if sc.Err() != nil {
		return nil, false
	}
	return entries, true
}

// parseSection takes apart `[name]`, `[name "sub"]` or the older
// `[name.sub]` (whose subsection git lower-cases).
func parseSection(line string) (section, sub string, ok bool) {
	if !strings.HasSuffix(line, "]") {
		return "", "", false // a key after the header, or no "]"
	}
	in := line[1 : len(line)-1]
	if name, rest, quoted := strings.Cut(in, " "); quoted {
		rest = strings.TrimSpace(rest)
		if len(rest) < 2 || rest[0] != '"' || rest[len(rest)-1] != '"' {
			return "", "", false
		}
		sub = rest[1 : len(rest)-1]
		if strings.ContainsAny(sub, "\"\\") || !validName(name) {
			return "", "", false
		}
		return strings.ToLower(name), sub, true
	}
	name, sub, _ := strings.Cut(in, ".")
	if !validName(name) || strings.ContainsAny(sub, " \t\"\\") {
		return "", "", false
	}
	return strings.ToLower(name), strings.ToLower(sub), true
}

// validName: a section name is alphanumeric, "-" and "." (the dot taken
// as the older subsection form above).
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validKey: a key starts with a letter and has letters, digits and "-".
func validKey(s string) bool {
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z') {
		return false
	}
	return validName(s)
}
