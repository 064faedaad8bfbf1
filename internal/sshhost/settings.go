package sshhost

import (
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/config"
)

// Host is one configured SSH host with its effective settings (the
// host's own identityFile, knownHostsFile and workRoot, else the ssh.*
// defaults).
type Host struct {
	Name string
	Host string
	User string // "" lets ssh choose
	Port int
	// IdentityFile is the one key offered ("" lets ssh choose).
	IdentityFile string
	// KnownHostsFile is the user's known_hosts file for the host (strict
	// checking); "" means crabbox's own per-host file (trust on first use).
	KnownHostsFile string
	WorkRoot       string
}

// Endpoint is user@host:port (host:port without a user): the lease's
// WorkspaceID and what claims are bound to.
func (h Host) Endpoint() string {
	return endpoint(h.User, h.Host, h.Port)
}

func endpoint(user, host string, port int) string {
	hp := net.JoinHostPort(host, strconv.Itoa(port))
	if user == "" {
		return hp
	}
	return user + "@" + hp
}

// Settings is the ssh part of crabbox's configuration.
type Settings struct {
	Hosts []Host
	// CleanWorkdir: a release also removes <workRoot>/<leaseID> (recorded
	// in the claim when the lease is made).
	CleanWorkdir bool
	// CleanOverride is --ssh-clean-workdir[=false] given on the command
	// line: it wins over what a claim recorded. Nil when not given.
	CleanOverride *bool
	IdleTimeout   time.Duration
	TTL           time.Duration
}

// SettingsFrom is the ssh part of a resolved configuration.
func SettingsFrom(cfg *config.Config) Settings {
	s := Settings{
		CleanWorkdir: cfg.SSH.CleanWorkdir,
		IdleTimeout:  cfg.IdleTimeout,
		TTL:          cfg.TTL,
	}
	if cfg.Source("ssh.cleanWorkdir") == config.SourceFlag {
		v := cfg.SSH.CleanWorkdir
		s.CleanOverride = &v
	}
	for _, h := range cfg.SSH.Hosts {
		eff := Host{Name: h.Name, Host: h.Host, User: h.User, Port: h.Port,
			IdentityFile: h.IdentityFile, KnownHostsFile: h.KnownHostsFile, WorkRoot: h.WorkRoot}
		if eff.IdentityFile == "" {
			eff.IdentityFile = cfg.SSH.IdentityFile
		}
		if eff.KnownHostsFile == "" {
			eff.KnownHostsFile = cfg.SSH.KnownHostsFile
		}
		if eff.WorkRoot == "" {
			eff.WorkRoot = cfg.SSH.WorkRoot
		}
		if eff.WorkRoot == "" {
			eff.WorkRoot = config.DefaultSSHWorkRoot
		}
		if eff.Port == 0 {
			eff.Port = config.DefaultSSHPort
		}
		s.Hosts = append(s.Hosts, eff)
	}
	return s
}

// KnownHostsDir is where crabbox records host keys of SSH hosts without a
// knownHostsFile: <configDir>/ssh/known_hosts.d (mode 0700).
func KnownHostsDir(configDir string) string {
	return filepath.Join(configDir, "ssh", "known_hosts.d")
}

// TOFUKnownHostsFile is crabbox's own known_hosts file for host:port
// (mode 0600): <configDir>/ssh/known_hosts.d/<host>-<port>, the host
// lowercased with every character outside [a-z0-9.-] as "_". "" without a
// config dir.
func TOFUKnownHostsFile(configDir, host string, port int) string {
	if configDir == "" {
		return ""
	}
	return filepath.Join(KnownHostsDir(configDir), safeFileName(host)+"-"+strconv.Itoa(port))
}

func safeFileName(s string) string {
	s = strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, strings.ToLower(s))
	if s == "" || strings.HasPrefix(s, ".") {
		s = "_" + s
	}
	return s
}
