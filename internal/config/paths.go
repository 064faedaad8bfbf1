package config

import (
	"os"
	"path/filepath"
	"strings"
)

// Env looks up an environment variable, like os.LookupEnv.
type Env func(string) (string, bool)

// OSEnv is the process environment.
func OSEnv() Env { return os.LookupEnv }

// MapEnv is an Env backed by a map (for tests).
func MapEnv(m map[string]string) Env {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// get returns a non-empty, trimmed value of name; an empty value counts as
// unset.
func (e Env) get(name string) (string, bool) {
	if e == nil {
		return "", false
	}
	v, ok := e(name)
	if !ok || strings.TrimSpace(v) == "" {
		return "", false
	}
	return v, true
}

func home(env Env) string {
	h, _ := env.get("HOME")
	return h
}

// xdgDir returns $<xdgVar>/crabbox, else ~/<fallback>/crabbox, else "" when
// HOME is not set either. Relative XDG values are ignored, as the XDG spec
// asks.
func xdgDir(env Env, xdgVar, fallback string) string {
	if env == nil {
		env = OSEnv()
	}
	if d, ok := env.get(xdgVar); ok && filepath.IsAbs(d) {
		return filepath.Join(d, "crabbox")
	}
	if h := home(env); h != "" {
		return filepath.Join(h, fallback, "crabbox")
	}
	return ""
}

// ConfigDir is crabbox's config directory: $XDG_CONFIG_HOME/crabbox, else
// ~/.config/crabbox. Crabbox-owned files such as known_hosts live under it.
// It is "" when neither XDG_CONFIG_HOME nor HOME is set.
func ConfigDir(env Env) string { return xdgDir(env, "XDG_CONFIG_HOME", ".config") }

// StateDir is crabbox's state directory (claims, run history):
// $XDG_STATE_HOME/crabbox, else ~/.local/state/crabbox. It is "" when neither
// XDG_STATE_HOME nor HOME is set.
func StateDir(env Env) string {
	return xdgDir(env, "XDG_STATE_HOME", filepath.Join(".local", "state"))
}

// UserConfigPath is the user config file: $CRABBOX_CONFIG (~ expanded) when
// set, else <ConfigDir>/config.yaml. It is "" when no location can be found.
func UserConfigPath(env Env) string {
	if env == nil {
		env = OSEnv()
	}
	if p, ok := env.get("CRABBOX_CONFIG"); ok {
		return expandHome(strings.TrimSpace(p), env)
	}
	d := ConfigDir(env)
	if d == "" {
		return ""
	}
	return filepath.Join(d, "config.yaml")
}

// expandHome expands a leading "~" or "~/" using HOME from env. Other forms
// (~user) and paths without HOME are returned unchanged.
func expandHome(p string, env Env) string {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p
	}
	h := home(env)
	if h == "" {
		return p
	}
	return filepath.Join(h, p[1:])
}
