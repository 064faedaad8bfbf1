package shard

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/runs"
)

// itemsTimeout bounds --split-items-from.
const itemsTimeout = 5 * time.Minute

// FromCommand runs script with bash -c in dir (the repository root, on
// this machine) and returns its output's items (Lines). A failing script,
// or one that printed no item, is a usage error naming it.
func FromCommand(ctx context.Context, r execx.Runner, dir, script string) ([]string, error) {
	res, err := r.Run(ctx, execx.Cmd{Name: "bash", Args: []string{"-c", script}, Dir: dir, Timeout: itemsTimeout})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, exitcode.Errorf(exitcode.Usage, "--split-items-from %q failed: %v", script, err)
	}
	items := Lines(string(res.Stdout))
	if len(items) == 0 {
		return nil, exitcode.Errorf(exitcode.Usage, "--split-items-from %q printed no items (one per line expected)", script)
	}
	return items, nil
}

// Lines are the items of a command's output: one per line, surrounding
// spaces and carriage returns trimmed, empty lines skipped.
func Lines(out string) []string {
	var items []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			items = append(items, l)
		}
	}
	return items
}

// Glob returns the files (slash paths, as the sync manifest lists them)
// that pattern matches: path.Match per segment, and "**" for any number
// of segments (tests/**/*_test.py). A bad pattern is a usage error.
func Glob(files []string, pattern string) ([]string, error) {
	pattern = strings.TrimPrefix(pattern, "./")
	segs := strings.Split(pattern, "/")
	for _, s := range segs {
		if s == "**" {
			continue
		}
		if _, err := path.Match(s, ""); err != nil {
			return nil, exitcode.Errorf(exitcode.Usage, "--split-glob %q: %v", pattern, err)
		}
	}
	var out []string
	for _, f := range files {
		if matchSegs(segs, strings.Split(f, "/")) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, exitcode.Errorf(exitcode.Usage, "--split-glob %q matched no file that is synced", pattern)
	}
	return out, nil
}

func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(name); i++ {
				if matchSegs(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// Placeholder in a command is replaced by a shard's items.
const Placeholder = "{items}"

// Argv is a shard's command: argv with its items where Placeholder
// appears (a word that is the placeholder becomes the items, one word
// each; inside a longer word they are joined by spaces, each quoted with
// quote when the command runs through a shell), else after the last
// word. quote is the shell quoting (sshx.Quote) for shell commands, nil
// for argv commands, whose words are passed literally.
func Argv(argv, items []string, quote func(string) string) []string {
	words := items
	if quote != nil {
		words = make([]string, len(items))
		for i, it := range items {
			words[i] = quote(it)
		}
	}
	out := make([]string, 0, len(argv)+len(items))
	placed := false
	for _, a := range argv {
		switch {
		case a == Placeholder:
			out = append(out, words...)
			placed = true
		case strings.Contains(a, Placeholder):
			out = append(out, strings.ReplaceAll(a, Placeholder, strings.Join(words, " ")))
			placed = true
		default:
			out = append(out, a)
		}
	}
	if !placed {
		out = append(out, words...)
	}
	return out
}

// Describe is the plan's one line per shard, for --dry-run and the run's
// notes: "shard 2/4 items=3 est=12.5s: a b c".
func Describe(p Plan) []string {
	lines := []string{fmt.Sprintf("plan shards=%d items=%d basis=%s%s", len(p.Shards), p.Items, p.Basis, timedNote(p))}
	for _, s := range p.Shards {
		lines = append(lines, fmt.Sprintf("shard %d/%d items=%d est=%s: %s", s.Index, len(p.Shards), len(s.Items),
			FormatEstimate(p.Basis, s.Estimate), runs.CommandLine(s.Items, false)))
	}
	return lines
}

func timedNote(p Plan) string {
	if p.Basis != BasisTimings || p.Timed == p.Items {
		return ""
	}
	return fmt.Sprintf(" (timed %d of %d; the others at the mean)", p.Timed, p.Items)
}
