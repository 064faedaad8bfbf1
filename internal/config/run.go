package config

import (
	"fmt"
	"regexp"
	"strings"
)

// RunConfig is the run: block.
type RunConfig struct {
	// PreflightTools are the programs whose versions run --preflight
	// reports besides git and rsync.
	PreflightTools []string
	// MaxShards is the most workspaces run --shards and warmup --count
	// use without --force.
	MaxShards int
}

var toolName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)

// checkToolNames accepts program names (no paths, no options); empty
// entries are dropped.
func checkToolNames(v any) (any, error) {
	in := list(v)
	out := make([]string, 0, len(in))
	for _, e := range in {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if !toolName.MatchString(e) {
			return nil, fmt.Errorf("entry %q must be a program name (letters, digits, . _ + -; no path)", e)
		}
		out = append(out, e)
	}
	return out, nil
}
