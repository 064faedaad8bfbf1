// Package config loads crabbox's layered configuration: compiled defaults <
// user config file < repo config files < environment < flags.
//
// Every setting is declared once in a key table (keys.go) with its YAML key,
// aliases, env var, flag, kind and default. Each resolved value records the
// layer it came from, so `crabbox config show` and doctor can explain it.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// Layers (value sources), lowest precedence first.
const (
	SourceDefault = "default"
	SourceUser    = "user"
	SourceRepo    = "repo"
	SourceEnv     = "env"
	SourceFlag    = "flag"
)

// RepoConfigFiles are read from the repo root in this order; later wins.
var RepoConfigFiles = []string{"crabbox.yaml", ".crabbox.yaml"}

// Config is the effective configuration.
type Config struct {
	Provider    string // "", "coder" or "ssh"
	IdleTimeout time.Duration
	TTL         time.Duration
	// target, workRoot, class and serverType have no field: they are only
	// checked (see resolve) and shown by Settings.

	Coder   CoderConfig
	SSH     SSHConfig
	Sync    SyncConfig
	Env     EnvConfig
	Results ResultsConfig
	// Artifacts bounds what a run fetches (artifacts.go).
	Artifacts ArtifactsConfig
	Run       RunConfig

	// Files are the config files that were read, in layer order.
	Files []string
	// Warnings are non-fatal problems: unknown keys, ignored env values, a
	// user config readable by others, keys ignored from an untrusted repo
	// file.
	Warnings []string
	// Ignored are the trust-requiring keys a repo config file set that were
	// not applied because the file's content is not trusted.
	Ignored []IgnoredKey

	values map[string]value
}

// CoderConfig is the coder: block.
type CoderConfig struct {
	CLIPath              string
	Template             string
	Preset               string
	WorkspacePrefix      string // normalized: [a-z0-9-], ends with exactly one "-"
	WorkRoot             string
	Wait                 string // yes, no or auto
	UseParameterDefaults bool
	Parameters           []string // name=value
	RichParameterFile    string
	DeleteOnRelease      bool
}

// SyncConfig is the sync: block.
type SyncConfig struct {
	Delete             bool
	Checksum           bool
	GitSeed            bool
	Fingerprint        bool
	Timeout            time.Duration
	WarnFiles          int
	WarnBytes          int64
	FailFiles          int
	FailBytes          int64
	AllowLarge         bool
	AllowMassDeletions bool
	Exclude            []string
}

// EnvConfig is the env: block.
type EnvConfig struct {
	Allow []string
}

// ResultsConfig is the results: block.
type ResultsConfig struct {
	JUnit          []string
	Auto           bool
	FailOnFailures bool
}

// IgnoredKey is a key set by an untrusted repo config file.
type IgnoredKey struct {
	Key    string // canonical key
	Origin string // as written in the file (alias or key)
	File   string
	Value  string
}

// TrustEnv, set to a true value, trusts every repo config file (for CI
// that already trusts its checkout).
const TrustEnv = "CRABBOX_TRUST_REPO_CONFIG"

// TrustCommand is the command that trusts the current repo config files.
const TrustCommand = "crabbox config trust"

// value is one resolved setting.
type value struct {
	v      any
	source string
	file   string // config file for user/repo sources
	origin string // how the user named it: YAML key, env var or --flag
}

// LoadOptions are the inputs of Load.
type LoadOptions struct {
	// Env looks up environment variables; nil means the process environment.
	Env Env
	// RepoRoot is the git root of the current repo, "" outside a repo.
	RepoRoot string
	// Flags maps flag names (without "--") to raw values, only for flags the
	// user set explicitly. Names that are not configuration flags are ignored.
	Flags map[string]string
	// Trusted reports whether a repo config file with this exact content
	// was trusted by the user. Nil trusts nothing: trust-requiring keys
	// (KeySpec.NeedsTrust) from repo files are then ignored, unless
	// CRABBOX_TRUST_REPO_CONFIG is true.
	Trusted func(path string, data []byte) bool
}

// Load reads the config files, applies the env and flag layers, and
// validates the result. Errors carry exit code 2.
func Load(opts LoadOptions) (*Config, error) {
	env := opts.Env
	if env == nil {
		env = OSEnv()
	}
	c := &Config{values: map[string]value{}}
	for _, d := range keyTable {
		c.values[d.Key] = value{v: d.def, source: SourceDefault}
	}

	trusted := opts.Trusted
	if raw, ok := env.get(TrustEnv); ok {
		if b, ok := parseEnvBool(raw); ok && b {
			trusted = func(string, []byte) bool { return true }
		}
	}
	if trusted == nil {
		trusted = func(string, []byte) bool { return false }
	}
	for _, f := range configFiles(env, opts.RepoRoot) {
		if err := c.applyFile(f.path, f.layer, env, trusted); err != nil {
			return nil, err
		}
	}
	if err := c.applyEnv(env); err != nil {
		return nil, err
	}
	if err := c.applyFlags(opts.Flags, env); err != nil {
		return nil, err
	}
	if err := c.resolve(); err != nil {
		return nil, err
	}
	for _, d := range keyTable {
		if d.set != nil {
			d.set(c, c.values[d.Key].v)
		}
	}
	return c, nil
}

type configFile struct{ path, layer string }

// configFiles lists the files to read: only $CRABBOX_CONFIG when set, else
// the user file and the repo files.
func configFiles(env Env, repoRoot string) []configFile {
	if _, ok := env.get("CRABBOX_CONFIG"); ok {
		return []configFile{{UserConfigPath(env), SourceUser}}
	}
	var files []configFile
	if p := UserConfigPath(env); p != "" {
		files = append(files, configFile{p, SourceUser})
	}
	if repoRoot != "" {
		for _, name := range RepoConfigFiles {
			files = append(files, configFile{filepath.Join(repoRoot, name), SourceRepo})
		}
	}
	return files
}

func (c *Config) applyFile(path, layer string, env Env, trusted func(string, []byte) bool) error {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return exitcode.Errorf(exitcode.Usage, "cannot read config file %s: %v", path, err)
	}
	if st.IsDir() {
		return exitcode.Errorf(exitcode.Usage, "cannot read config file %s: is a directory", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return exitcode.Errorf(exitcode.Usage, "cannot read config file %s: %v", path, err)
	}
	if layer == SourceUser && st.Mode().Perm()&0o077 != 0 {
		c.Warnings = append(c.Warnings, fmt.Sprintf("user config %s is accessible by group or others (mode %04o); run: chmod 600 %s", path, st.Mode().Perm(), path))
	}
	entries, warnings, err := parseYAML(data)
	if err != nil {
		return exitcode.Errorf(exitcode.Usage, "invalid config file %s: %v", path, err)
	}
	for _, w := range warnings {
		c.Warnings = append(c.Warnings, path+": "+w)
	}
	c.Files = append(c.Files, path)
	// Trust is decided once per file, on the bytes just parsed.
	var isTrusted *bool
	for _, e := range entries {
		v, err := parseFileValue(e.def, e.raw)
		if err == nil {
			v, err = finish(e.def, v, env)
		}
		if err != nil {
			return exitcode.Errorf(exitcode.Usage, "%s %v; set in %s", e.name, err, path)
		}
		// An invalid value is an error wherever it is; a valid
		// trust-requiring one from an untrusted repo file is ignored.
		if layer == SourceRepo && e.def.NeedsTrust {
			if isTrusted == nil {
				t := trusted(path, data)
				isTrusted = &t
			}
			if !*isTrusted {
				c.Ignored = append(c.Ignored, IgnoredKey{Key: e.def.Key, Origin: e.name, File: path, Value: formatValue(v)})
				c.Warnings = append(c.Warnings, fmt.Sprintf("ignoring %s from %s: the file is not trusted (this key can run programs, send data off this machine or destroy workspaces); to trust its current content, run: %s",
					e.name, path, TrustCommand))
				continue
			}
		}
		c.values[e.def.Key] = value{v: v, source: layer, file: path, origin: e.name}
	}
	return nil
}

func (c *Config) applyEnv(env Env) error {
	for _, d := range keyTable {
		if d.Env == "" {
			continue
		}
		raw, ok := env.get(d.Env)
		if !ok {
			continue
		}
		var v any
		var err error
		switch {
		case d.Kind == KindBool:
			b, ok := parseEnvBool(raw)
			if !ok {
				c.Warnings = append(c.Warnings, fmt.Sprintf("%s=%q is not a boolean (1/true/yes/on or 0/false/no/off); ignored", d.Env, raw))
				continue
			}
			v = b
		default:
			v, err = parseText(d, raw, false)
		}
		if err == nil {
			v, err = finish(d, v, env)
		}
		if err != nil {
			return exitcode.Errorf(exitcode.Usage, "%s %v", d.Env, err)
		}
		c.values[d.Key] = value{v: v, source: SourceEnv, origin: d.Env}
	}
	return nil
}

func (c *Config) applyFlags(flags map[string]string, env Env) error {
	names := make([]string, 0, len(flags))
	for n := range flags {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		d := keysByFlag[name]
		if d == nil {
			continue
		}
		raw := flags[name]
		var v any
		var err error
		if d.Kind == KindBool {
			var b bool
			b, err = strconv.ParseBool(strings.TrimSpace(raw))
			if err != nil {
				err = fmt.Errorf("must be true or false (got %q)", raw)
			}
			v = b
		} else {
			v, err = parseText(d, raw, false)
		}
		if err == nil {
			v, err = finish(d, v, env)
		}
		if err != nil {
			return exitcode.Errorf(exitcode.Usage, "--%s %v", name, err)
		}
		c.values[d.Key] = value{v: v, source: SourceFlag, origin: "--" + name}
		if d.alsoSetsByFlag != "" && str(v) != "" {
			c.values[d.alsoSetsByFlag] = value{v: v, source: SourceFlag, origin: "--" + name}
		}
	}
	return nil
}

// finish runs the key's check and expands ~ in path keys.
func finish(d *keyDef, v any, env Env) (any, error) {
	if d.check != nil {
		var err error
		if v, err = d.check(v); err != nil {
			return nil, err
		}
	}
	if d.path {
		v = expandHome(str(v), env)
	}
	if d.Kind == KindHosts {
		v = expandSSHHosts(sshHosts(v), env)
	}
	return v, nil
}

// parseText parses an env or flag value (or a YAML scalar when yamlInt says
// whether it was tagged as an integer) for any non-bool kind.
func parseText(d *keyDef, raw string, yamlInt bool) (any, error) {
	// A NUL (possible in YAML as "\0") cannot reach a program argument,
	// a path or an environment variable literally.
	if strings.ContainsRune(raw, 0) {
		return nil, fmt.Errorf("must not contain a NUL byte (got %q)", raw)
	}
	switch d.Kind {
	case KindString, KindEnum:
		return raw, nil
	case KindDuration:
		s := strings.TrimSpace(raw)
		if yamlInt {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n > int64(1<<62/time.Second) || n < -int64(1<<62/time.Second) {
				return nil, fmt.Errorf("must be a duration such as 30m (got %q)", raw)
			}
			return time.Duration(n) * time.Second, nil
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("must be a duration such as 30m (got %q)", raw)
		}
		return v, nil
	case KindInt, KindInt64:
		n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
		if err != nil || n < 0 || (d.Kind == KindInt && n > int64(int(^uint(0)>>1))) {
			return nil, fmt.Errorf("must be a non-negative integer (got %q)", raw)
		}
		if d.Kind == KindInt {
			return int(n), nil
		}
		return n, nil
	case KindList:
		if d.noneClears && strings.EqualFold(strings.TrimSpace(raw), "none") {
			return []string{}, nil
		}
		return splitList(raw), nil
	case KindBool:
		b, ok := parseEnvBool(raw)
		if !ok {
			return nil, fmt.Errorf("must be true or false (got %q)", raw)
		}
		return b, nil
	case KindHosts:
		return parseSSHHostsText(raw, d.noneClears)
	}
	return nil, fmt.Errorf("unsupported kind %s", d.Kind)
}

// splitList splits a comma-separated list, trimming entries and dropping
// empty ones.
func splitList(s string) []string {
	out := []string{}
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// parseEnvBool parses 1/true/yes/on and 0/false/no/off (any case).
func parseEnvBool(s string) (b, ok bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "yes", "on":
		return true, true
	case "0", "false", "no", "off":
		return false, true
	}
	return false, false
}

// resolve applies the cross-field rules: the Coder work root and the
// provider=coder restrictions.
func (c *Config) resolve() error {
	provider := str(c.values["provider"].v)

	// Coder work root (docs/configuration.md, Work root): a non-default
	// generic root fills an unset coder.workRoot; an explicit coder.workRoot
	// wins.
	generic := c.values["workRoot"]
	cw := c.values["coder.workRoot"]
	switch {
	case str(generic.v) != DefaultWorkRoot && (cw.source == SourceDefault || str(cw.v) == ""):
		if provider == "coder" {
			if err := checkNotTooBroad(str(generic.v)); err != nil {
				return exitcode.Errorf(exitcode.Usage, "%s %v%s", generic.origin, err, fileSuffix(generic))
			}
		}
		cw = generic
	case str(cw.v) == "":
		cw = value{v: DefaultCoderWorkRoot, source: cw.source, file: cw.file, origin: cw.origin}
	}
	c.values["coder.workRoot"] = cw
	if provider == "coder" {
		c.values["workRoot"] = cw
	}

	// The SSH work root follows the same rule: an explicit ssh.workRoot
	// wins, else a non-default generic root, else DefaultSSHWorkRoot.
	sw := c.values["ssh.workRoot"]
	switch {
	case str(generic.v) != DefaultWorkRoot && (sw.source == SourceDefault || str(sw.v) == ""):
		if provider == "ssh" {
			if err := checkNotTooBroad(str(generic.v)); err != nil {
				return exitcode.Errorf(exitcode.Usage, "%s %v%s", generic.origin, err, fileSuffix(generic))
			}
		}
		sw = generic
	case str(sw.v) == "":
		sw = value{v: DefaultSSHWorkRoot, source: sw.source, file: sw.file, origin: sw.origin}
	}
	c.values["ssh.workRoot"] = sw
	if provider == "ssh" {
		c.values["workRoot"] = sw
	}

	if provider != "coder" {
		return nil
	}
	if v := c.values["class"]; v.source != SourceDefault {
		return exitcode.Errorf(exitcode.Usage, "%s is not supported for provider=coder; choose size through the Coder template or --coder-preset%s", v.origin, fileSuffix(v))
	}
	if v := c.values["serverType"]; v.source != SourceDefault {
		return exitcode.Errorf(exitcode.Usage, "%s is not supported for provider=coder; choose a Coder template with --coder-template%s", v.origin, fileSuffix(v))
	}
	return nil
}

func fileSuffix(v value) string {
	if v.file == "" {
		return ""
	}
	return "; set in " + v.file
}

// Setting is one key's effective value and where it came from.
type Setting struct {
	Key    string
	Value  string
	Source string // default, user, repo, env or flag
	File   string // the config file for user and repo sources
}

// Settings lists every key, sorted, with its effective value and source.
// Lists are comma-joined; durations are printed like 30m or 1h30m.
func (c *Config) Settings() []Setting {
	out := make([]Setting, 0, len(keyTable))
	for _, d := range keyTable {
		v := c.values[d.Key]
		out = append(out, Setting{Key: d.Key, Value: formatValue(v.v), Source: v.source, File: v.file})
	}
	return out
}

// Setting returns one key's setting; aliases are accepted.
func (c *Config) Setting(key string) (Setting, bool) {
	d := keysByName[key]
	if d == nil || c.values == nil {
		return Setting{}, false
	}
	v := c.values[d.Key]
	return Setting{Key: d.Key, Value: formatValue(v.v), Source: v.source, File: v.file}, true
}

// Source returns the layer key's effective value came from ("" for an
// unknown key). Aliases are accepted.
func (c *Config) Source(key string) string {
	s, _ := c.Setting(key)
	return s.Source
}

func formatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case time.Duration:
		return formatDuration(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case []string:
		return strings.Join(x, ",")
	case []SSHHost:
		parts := make([]string, len(x))
		for i, h := range x {
			parts[i] = h.String()
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
}
