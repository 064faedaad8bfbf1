package syncer

import (
	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/remotecmd"
)

// OptionsFrom is the sync part of a resolved configuration; a run sets
// RepoRoot, Workdir and its flags' overrides on top.
func OptionsFrom(cfg *config.Config) Options {
	s := cfg.Sync
	return Options{
		Exclude:            s.Exclude,
		Delete:             s.Delete,
		Checksum:           s.Checksum,
		Fingerprint:        s.Fingerprint,
		GitSeed:            s.GitSeed,
		PrepareHook:        remotecmd.ReapLeftovers,
		WarnFiles:          s.WarnFiles,
		FailFiles:          s.FailFiles,
		WarnBytes:          s.WarnBytes,
		FailBytes:          s.FailBytes,
		AllowLarge:         s.AllowLarge,
		AllowMassDeletions: s.AllowMassDeletions,
		Timeout:            s.Timeout,
	}
}
