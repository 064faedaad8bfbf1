package config

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The check functions normalize and validate one parsed value. Error
// messages leave out the key: the caller prefixes the key, env var or flag,
// so `must be yes, no, or auto` becomes `coder.wait must be yes, no, or auto`.

func trimString(v any) (any, error) { return strings.TrimSpace(str(v)), nil }

func checkProvider(v any) (any, error) {
	s := strings.ToLower(strings.TrimSpace(str(v)))
	switch s {
	case "", "coder":
		return s, nil
	case "ssh", "static", "static-ssh":
		return "ssh", nil
	}
	return nil, fmt.Errorf("must be coder or ssh (got %q)", str(v))
}

func checkTarget(v any) (any, error) {
	s := strings.ToLower(strings.TrimSpace(str(v)))
	if s == "linux" {
		return s, nil
	}
	return nil, fmt.Errorf("must be linux, the only target crabbox supports (got %q)", str(v))
}

func checkWait(v any) (any, error) {
	s := strings.ToLower(strings.TrimSpace(str(v)))
	switch s {
	case "":
		return "yes", nil
	case "yes", "no", "auto":
		return s, nil
	}
	return nil, fmt.Errorf("must be yes, no, or auto (got %q)", str(v))
}

func checkCLIPath(v any) (any, error) {
	s := strings.TrimSpace(str(v))
	if s == "" {
		return nil, errors.New("must not be empty")
	}
	return s, nil
}

func checkPositiveDuration(v any) (any, error) {
	if d := dur(v); d <= 0 {
		return nil, fmt.Errorf("must be a positive duration (got %s)", formatDuration(d))
	}
	return v, nil
}

// checkPersist accepts 0 (off) up to MaxSSHPersist.
func checkPersist(v any) (any, error) {
	if d := dur(v); d < 0 || d > MaxSSHPersist {
		return nil, fmt.Errorf("must be between 0 and %s (got %s)", formatDuration(MaxSSHPersist), formatDuration(d))
	}
	return v, nil
}

// checkAbsPath cleans a path and requires it to be absolute.
func checkAbsPath(v any) (any, error) {
	s := strings.TrimSpace(str(v))
	if s == "" {
		return nil, errors.New("must not be empty")
	}
	if !strings.HasPrefix(s, "/") {
		return nil, fmt.Errorf("must be an absolute path (got %q)", s)
	}
	// The remote work dir is an rsync destination and appears in remote
	// shell commands: refuse up front (exit 2, before any workspace is
	// created) what the sync would refuse later.
	if i := strings.IndexFunc(s, func(r rune) bool { return !workRootChar(r) }); i >= 0 {
		return nil, fmt.Errorf("may only hold letters, digits and / . _ - + @ , = (got %q)", s)
	}
	return path.Clean(s), nil
}

// workRootChar: the characters a remote work root may hold (the sync's
// safe remote path set).
func workRootChar(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("/._-+@,=", r)
}

// tooBroadRoots are remote directories a work root must never be.
var tooBroadRoots = map[string]bool{
	"/": true, "/bin": true, "/dev": true, "/etc": true, "/home": true, "/lib": true,
	"/lib64": true, "/opt": true, "/proc": true, "/root": true, "/sbin": true, "/sys": true,
	"/tmp": true, "/usr": true, "/var": true, "/workspaces": true,
}

// checkCoderWorkRoot accepts "" (meaning the default or the generic root),
// else a clean absolute path that is not too broad.
func checkCoderWorkRoot(v any) (any, error) {
	if strings.TrimSpace(str(v)) == "" {
		return "", nil
	}
	c, err := checkAbsPath(v)
	if err != nil {
		return nil, err
	}
	return c, checkNotTooBroad(str(c))
}

func checkNotTooBroad(p string) error {
	if tooBroadRoots[p] {
		return fmt.Errorf("%q is too broad; choose a dedicated subdirectory", p)
	}
	return nil
}

func checkPrefix(v any) (any, error) { return NormalizeWorkspacePrefix(str(v)) }

var dashRuns = regexp.MustCompile(`-{2,}`)
var prefixChars = regexp.MustCompile(`^[a-z0-9-]+$`)

// NormalizeWorkspacePrefix normalizes a coder.workspacePrefix: trimmed and
// lowercased, empty becomes "crabbox-", runs of "-" collapse to one, leading
// and trailing "-" are stripped, and the result ends with exactly one "-".
// It fails when nothing is left, when characters outside [a-z0-9-] remain, or
// when the result is longer than MaxWorkspacePrefixLen. The error does not
// name the key.
func NormalizeWorkspacePrefix(raw string) (string, error) {
	s := strings.ToLower(strings.TrimSpace(raw))
	if s == "" {
		return DefaultWorkspacePrefix, nil
	}
	s = strings.Trim(dashRuns.ReplaceAllString(s, "-"), "-")
	if s == "" {
		return "", fmt.Errorf("%q is empty after removing dashes; use letters and digits, e.g. crabbox-", raw)
	}
	if !prefixChars.MatchString(s) {
		return "", fmt.Errorf("%q may only contain a-z, 0-9 and -", raw)
	}
	s += "-"
	if len(s) > MaxWorkspacePrefixLen {
		return "", fmt.Errorf("%q is too long (%d characters after normalization, at most %d); Coder workspace names are limited to 32 characters", raw, len(s), MaxWorkspacePrefixLen)
	}
	return s, nil
}

func checkParameters(v any) (any, error) {
	in := list(v)
	out := make([]string, 0, len(in))
	for _, e := range in {
		e = strings.TrimSpace(e)
		name, val, ok := strings.Cut(e, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("entry %q must be name=value", e)
		}
		out = append(out, name+"="+strings.TrimSpace(val))
	}
	return out, nil
}

// checkPlainList trims entries and drops empty ones.
func checkPlainList(v any) (any, error) {
	in := list(v)
	out := make([]string, 0, len(in))
	for _, e := range in {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out, nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// checkEnvAllow accepts exact names and PREFIX* entries; a bare "*" is
// dropped, as are empty entries.
func checkEnvAllow(v any) (any, error) {
	in := list(v)
	out := make([]string, 0, len(in))
	for _, e := range in {
		e = strings.TrimSpace(e)
		if e == "" || e == "*" {
			continue
		}
		if !envName.MatchString(strings.TrimSuffix(e, "*")) {
			return nil, fmt.Errorf("entry %q must be a variable name or NAME_PREFIX*", e)
		}
		out = append(out, e)
	}
	return out, nil
}

// formatDuration prints whole hours as "2h", whole minutes as "90m" and
// anything else in Go's form ("1m30s").
func formatDuration(d time.Duration) string {
	switch {
	case d != 0 && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d != 0 && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return d.String()
}
