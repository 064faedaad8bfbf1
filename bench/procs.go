package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// counted are the programs figure 4 counts.
var counted = []string{"coder", "ssh", "rsync", "git"}

// counter is a directory of wrapper scripts, first on PATH, one per
// counted program: each appends its name and argv (one NUL-terminated
// record; an argument may hold newlines) to a log and execs the real
// binary.
type counter struct {
	log     string
	environ []string
}

func (b *bench) counter() (*counter, error) {
	dir := filepath.Join(b.tmp, "counting-bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := &counter{log: filepath.Join(b.tmp, "programs.log")}
	var path string
	for _, e := range b.environ {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, name := range counted {
		real := b.coder
		if name != "coder" {
			p, err := lookPath(name, path)
			if err != nil {
				return nil, err
			}
			real = p
		}
		script := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\0' %q\" $*\" >> %q\nexec %q \"$@\"\n", name, c.log, real)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			return nil, err
		}
	}
	for _, e := range b.environ {
		if strings.HasPrefix(e, "PATH=") {
			e = "PATH=" + dir + ":" + path
		}
		c.environ = append(c.environ, e)
	}
	return c, nil
}

// count runs f and returns how many times each counted program started.
func (c *counter) count(f func() error) (map[string]int, error) {
	if err := os.Remove(c.log); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	if err := f(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(c.log)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	n := map[string]int{}
	var seen []string
	for _, rec := range strings.Split(string(b), "\x00") {
		if name, _, _ := strings.Cut(rec, " "); name != "" {
			n[name]++
			short := strings.Join(strings.Fields(rec), " ")
			if len(short) > 100 {
				short = short[:100] + "…"
			}
			seen = append(seen, short)
		}
	}
	logf("  programs:\n    %s", strings.Join(seen, "\n    "))
	return n, nil
}

// lookPath finds name in path (not the bench's own PATH).
func lookPath(name, path string) (string, error) {
	for _, d := range filepath.SplitList(path) {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return exec.LookPath(name)
}
