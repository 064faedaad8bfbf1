package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// lease is a generated repo with its warmed lease (first sync done).
type lease struct {
	dir, id, ref string
}

var leasedLine = regexp.MustCompile(`(?m)^leased (cbx_\w+) .* server=(\S+)`)

// repo returns the lease for a generated repo of n files named name,
// making it on first use: the repo, `crabbox warmup`, one untimed run (the
// first sync). Its release (with the workspace deleted) is a cleanup.
func (b *bench) repo(name string, n int) (*lease, error) {
	if l := b.leases[name]; l != nil {
		return l, nil
	}
	dir := filepath.Join(b.tmp, name)
	logf("generating %s (%d files)", name, n)
	if err := b.genRepo(dir, n); err != nil {
		return nil, err
	}
	out, err := sh(5*time.Minute, dir, b.environ, b.crabbox, "warmup", "--slug", "bench-"+name)
	if err != nil {
		return nil, fmt.Errorf("warmup: %v\n%s", err, out)
	}
	m := leasedLine.FindStringSubmatch(string(out))
	if m == nil {
		return nil, fmt.Errorf("warmup output: %s", out)
	}
	l := &lease{dir: dir, id: m[1], ref: m[2]}
	if !*keep {
		b.cleanups = append(b.cleanups, func() {
			sh(2*time.Minute, dir, b.environ, b.crabbox, "stop", "--coder-delete-on-release", l.id)
		})
	}
	if out, err := sh(10*time.Minute, dir, b.environ, b.crabbox, "run", "--id", l.id, "--", "true"); err != nil {
		return nil, fmt.Errorf("first run: %v\n%s", err, out)
	}
	// The generated repo and its first sync wrote twice n files: flushed
	// now, their writeback does not land in the first timed pairs.
	if out, err := sh(time.Minute, dir, b.environ, "sync"); err != nil {
		return nil, fmt.Errorf("sync: %v\n%s", err, out)
	}
	b.leases[name] = l
	return l, nil
}

func (b *bench) small() (*lease, error) { return b.repo("small-repo", 40) }
func (b *bench) big() (*lease, error)   { return b.repo("big-repo", *files) }

func (b *bench) genRepo(repo string, n int) error {
	for i := 0; i < n; i++ {
		d := filepath.Join(repo, "src", fmt.Sprintf("d%d", i%200))
		if i < 200 {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		body := fmt.Sprintf("file %d\n%s\n", i, strings.Repeat("crabbox ", 8+i%64))
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d.txt", i/200)), []byte(body), 0o644); err != nil {
			return err
		}
	}
	cfg := fmt.Sprintf("provider: coder\ncoder:\n  template: %s\n  workRoot: %s\n", b.template, filepath.Join(b.home, "remote"))
	if err := os.WriteFile(filepath.Join(repo, "crabbox.yaml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"-c", "user.email=b@example.com", "-c", "user.name=b", "commit", "-qm", "gen"}} {
		if out, err := sh(5*time.Minute, repo, b.environ, "git", args...); err != nil {
			return fmt.Errorf("git %v: %v\n%s", args, err, out)
		}
	}
	return nil
}

// rawSSH are the floor's ssh options: a fresh connection through Coder's
// ProxyCommand, no control master.
func (b *bench) rawSSH(ref string) []string {
	return []string{"-o", fmt.Sprintf("ProxyCommand=%s ssh --stdio %s", b.coder, ref),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"}
}

// floor is one sample of the floor for l's workspace: `coder list -o json`
// + one fresh proxied `ssh true`.
func (b *bench) floor(l *lease) sample {
	ssh := append(b.rawSSH(l.ref), "x", "true")
	return func() (time.Duration, error) {
		t0 := time.Now()
		if out, err := sh(time.Minute, l.dir, b.environ, b.coder, "list", "-o", "json"); err != nil {
			return 0, fmt.Errorf("floor coder list: %v\n%s", err, out)
		}
		if out, err := sh(time.Minute, l.dir, b.environ, "ssh", ssh...); err != nil {
			return 0, fmt.Errorf("floor ssh: %v\n%s", err, out)
		}
		return time.Since(t0), nil
	}
}

// warmRun is one sample of `crabbox run --id L -- true` (wall clock of the
// whole process), after before (untimed) when it is not nil.
func (b *bench) warmRun(l *lease, environ []string, before func() error) sample {
	if environ == nil {
		environ = b.environ
	}
	return func() (time.Duration, error) {
		if before != nil {
			if err := before(); err != nil {
				return 0, err
			}
		}
		t0 := time.Now()
		out, err := sh(time.Minute, l.dir, environ, b.crabbox, "run", "--id", l.id, "--", "true")
		if err != nil {
			return 0, fmt.Errorf("warm run: %v\n%s", err, out)
		}
		return time.Since(t0), nil
	}
}

// stateDir is crabbox's state dir in the bench's environment.
func (b *bench) stateDir() string { return filepath.Join(b.home, ".local", "state", "crabbox") }

// endMasters ends every persistent ssh master of the bench's crabbox
// state (as ssh.persist elapsing would) and waits for their sockets to go.
func (b *bench) endMasters() error {
	recs, _ := filepath.Glob(filepath.Join(b.stateDir(), "ssh", "masters", "*", "record.json"))
	for _, rec := range recs {
		raw, err := os.ReadFile(rec)
		if err != nil {
			continue
		}
		var r struct {
			Socket string `json:"socket"`
		}
		if json.Unmarshal(raw, &r) != nil || r.Socket == "" {
			continue
		}
		if _, err := os.Stat(r.Socket); err != nil {
			continue
		}
		sh(10*time.Second, b.tmp, b.environ, "ssh", "-O", "exit", "-o", "ControlPath="+r.Socket, "x")
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := os.Stat(r.Socket); err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := os.Stat(r.Socket); err == nil {
			return fmt.Errorf("ssh master %s still up 5s after ssh -O exit", r.Socket)
		}
	}
	return nil
}

// liveMasters counts the persistent masters whose socket exists.
func (b *bench) liveMasters() int {
	n := 0
	recs, _ := filepath.Glob(filepath.Join(b.stateDir(), "ssh", "masters", "*", "record.json"))
	for _, rec := range recs {
		raw, _ := os.ReadFile(rec)
		var r struct {
			Socket string `json:"socket"`
		}
		if json.Unmarshal(raw, &r) == nil && r.Socket != "" {
			if _, err := os.Stat(r.Socket); err == nil {
				n++
			}
		}
	}
	return n
}

func timingMs(out []byte, key string) (time.Duration, error) {
	v, err := timingField(out, key)
	if n, ok := v.(float64); ok {
		return time.Duration(n) * time.Millisecond, nil
	}
	return 0, err
}

// timingString is a string field of the timing JSON in out.
func timingString(out []byte, key string) (string, error) {
	v, err := timingField(out, key)
	if s, ok := v.(string); ok && s != "" {
		return s, nil
	}
	return "", err
}

func timingField(out []byte, key string) (any, error) {
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			if v, ok := m[key]; ok {
				return v, nil
			}
		}
	}
	return nil, fmt.Errorf("no %s in timing JSON:\n%s", key, out)
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return out
}

func sh(timeout time.Duration, dir string, environ []string, name string, args ...string) ([]byte, error) {
	return shIn(timeout, dir, environ, nil, name, args...)
}

// shIn is sh with stdin.
func shIn(timeout time.Duration, dir string, environ []string, stdin []byte, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if environ != nil {
		cmd.Env = environ
	}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	return out, err
}
