// Command bench measures crabbox against the raw floor on the Coder lab
// (make bench). It brings up a private lab, runs interleaved A/B pairs and
// prints medians and ratios:
//
//  1. warm no-change `crabbox run --id L -- true` vs `coder list -o json` +
//     one `ssh -o ProxyCommand='coder ssh --stdio <ref>' … true`;
//  2. a 1-file change in a generated 20,000-file repo: crabbox's sync phase
//     vs a raw `rsync -a --files-from` of the same manifest through the same
//     ProxyCommand;
//  3. the first sync of that repo vs the same raw rsync into an empty dir;
//  4. how many `coder ssh --stdio` processes a warm run starts.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

var (
	pairs = flag.Int("pairs", 7, "A/B pairs per figure")
	files = flag.Int("files", 20000, "files in the generated repo")
	keep  = flag.Bool("keep", false, "leave the lab and temp dirs")
)

type env struct {
	root, tmp, crabbox, coder string
	environ                   []string
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	root, _ := filepath.Abs(".")
	tmp, err := os.MkdirTemp("", "crabbox-bench-")
	if err != nil {
		return err
	}
	e := &env{root: root, tmp: tmp, crabbox: filepath.Join(tmp, "crabbox")}
	lab := filepath.Join(root, "scripts", "coder-lab", "lab")
	os.Setenv("CODER_LAB_STATE", filepath.Join(tmp, "lab"))
	if !*keep {
		defer os.RemoveAll(tmp)
		defer sh(2*time.Minute, root, nil, lab, "down")
	}
	if out, err := sh(5*time.Minute, root, nil, "go", "build", "-o", e.crabbox, "./cmd/crabbox"); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}
	logf("lab up")
	if out, err := sh(10*time.Minute, root, nil, lab, "up"); err != nil {
		return fmt.Errorf("lab up: %v\n%s", err, out)
	}
	out, err := sh(time.Minute, root, nil, "bash", "-c", `eval "$("$0" env)" && printf '%s\0' "$PATH" "$CODER_CONFIG_DIR" "$CODER_URL" "$CODER_LAB_TEMPLATE"`, lab)
	if err != nil {
		return fmt.Errorf("lab env: %v", err)
	}
	p := strings.Split(string(out), "\x00")
	e.coder = filepath.Join(strings.SplitN(p[0], ":", 2)[0], "coder")
	home := filepath.Join(tmp, "home")
	// The generated repos' crabbox.yaml sets coder.workRoot: the bench
	// trusts its own checkouts, as CI would.
	e.environ = []string{"PATH=" + p[0], "HOME=" + home, "CODER_CONFIG_DIR=" + p[1], "CODER_URL=" + p[2], "CRABBOX_TRUST_REPO_CONFIG=1",
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"), "XDG_STATE_HOME=" + filepath.Join(home, ".local", "state"), "LANG=C.UTF-8"}
	template := p[3]
	if err := benchShards(e, template, filepath.Join(home, "remote")); err != nil || *shardOnly {
		return err
	}

	// The generated repo and its lease.
	repo := filepath.Join(tmp, "big-repo")
	logf("generating a %d-file repo", *files)
	if err := genRepo(e, repo, *files, template, filepath.Join(home, "remote")); err != nil {
		return err
	}
	logf("warmup")
	out, err = sh(5*time.Minute, repo, e.environ, e.crabbox, "warmup", "--slug", "bench")
	if err != nil {
		return fmt.Errorf("warmup: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^leased (cbx_\w+) .* server=(\S+)`).FindStringSubmatch(string(out))
	if m == nil {
		return fmt.Errorf("warmup output: %s", out)
	}
	lease, ref := m[1], m[2]
	defer sh(2*time.Minute, repo, e.environ, e.crabbox, "stop", "--coder-delete-on-release", lease)
	// First crabbox sync (untimed) so figure 1 measures the warm no-change path.
	if out, err := sh(10*time.Minute, repo, e.environ, e.crabbox, "run", "--id", lease, "--", "true"); err != nil {
		return fmt.Errorf("first run: %v\n%s", err, out)
	}
	proxy := fmt.Sprintf("ProxyCommand=%s ssh --stdio %s", e.coder, ref)
	rawSSH := []string{"-o", proxy, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"}
	sshCmd := func(remote string) error {
		_, err := sh(time.Minute, repo, e.environ, "ssh", append(append([]string{}, rawSSH...), "x", remote)...)
		return err
	}

	// 1. Warm no-change run vs floor, in a typical small repo (1) and in
	// the generated repo (1b).
	small := filepath.Join(tmp, "small-repo")
	if err := genRepo(e, small, 40, template, filepath.Join(home, "remote")); err != nil {
		return err
	}
	out, err = sh(5*time.Minute, small, e.environ, e.crabbox, "warmup", "--slug", "bench-small")
	if err != nil {
		return fmt.Errorf("warmup: %v\n%s", err, out)
	}
	sm := regexp.MustCompile(`(?m)^leased (cbx_\w+) .* server=(\S+)`).FindStringSubmatch(string(out))
	if sm == nil {
		return fmt.Errorf("warmup output: %s", out)
	}
	defer sh(2*time.Minute, small, e.environ, e.crabbox, "stop", "--coder-delete-on-release", sm[1])
	floorFor := func(ref string) func() (time.Duration, error) {
		ssh := append(append([]string{}, rawSSH...), "x", "true")
		ssh[1] = fmt.Sprintf("ProxyCommand=%s ssh --stdio %s", e.coder, ref)
		return func() (time.Duration, error) {
			t0 := time.Now()
			if _, err := sh(time.Minute, repo, e.environ, e.coder, "list", "-o", "json"); err != nil {
				return 0, err
			}
			if out, err := sh(time.Minute, repo, e.environ, "ssh", ssh...); err != nil {
				return 0, fmt.Errorf("floor ssh: %v\n%s", err, out)
			}
			return time.Since(t0), nil
		}
	}
	warmIn := func(dir, id string) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			t0 := time.Now()
			out, err := sh(time.Minute, dir, e.environ, e.crabbox, "run", "--id", id, "--", "true")
			if err != nil {
				return 0, fmt.Errorf("warm run: %v\n%s", err, out)
			}
			return time.Since(t0), nil
		}
	}
	if _, err := warmIn(small, sm[1])(); err != nil { // first sync, untimed
		return err
	}
	logf("figure 1: warm no-change run (small repo)")
	f1a, f1b, err := interleave(*pairs, floorFor(sm[2]), warmIn(small, sm[1]))
	if err != nil {
		return err
	}
	logf("figure 1b: warm no-change run (%d-file repo)", *files)
	f1ba, f1bb, err := interleave(*pairs, floorFor(ref), warmIn(repo, lease))
	if err != nil {
		return err
	}

	// Raw rsync of the same manifest through the same ProxyCommand.
	manifest, err := sh(time.Minute, repo, e.environ, "git", "ls-files", "--cached", "--others", "--exclude-standard", "-z")
	if err != nil {
		return err
	}
	rawDir := filepath.Join(home, "raw-copy")
	rawRsync := func() (time.Duration, error) {
		rsh := "ssh " + strings.Join(quoteAll(rawSSH), " ")
		t0 := time.Now()
		cmd := exec.Command("rsync", "-a", "--files-from=-", "--from0", "-e", rsh, repo+"/", "x:"+rawDir+"/")
		cmd.Env, cmd.Stdin = e.environ, bytes.NewReader(manifest)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("raw rsync: %v\n%s", err, out)
		}
		return time.Since(t0), nil
	}
	syncPhase := func(args ...string) (time.Duration, error) {
		out, err := sh(10*time.Minute, repo, e.environ, e.crabbox, append([]string{"run", "--id", lease, "--sync-only", "--timing-json"}, args...)...)
		if err != nil {
			return 0, fmt.Errorf("crabbox sync: %v\n%s", err, out)
		}
		return timingMs(out, "syncMs")
	}
	touch := 0
	change := func() {
		touch++
		f := filepath.Join(repo, "src", "d0", "f0.txt")
		os.WriteFile(f, []byte(fmt.Sprintf("changed %d\n", touch)), 0o644)
	}

	// 3. First sync (empty target) vs raw rsync into an empty dir.
	logf("figure 3: first sync of %d files", *files)
	f3a, f3b, err := interleave(max(3, *pairs/2),
		func() (time.Duration, error) {
			if err := sshCmd("rm -rf " + rawDir); err != nil {
				return 0, err
			}
			return rawRsync()
		},
		func() (time.Duration, error) { return syncPhase("--full-resync") })
	if err != nil {
		return err
	}

	// 2. One-file change.
	logf("figure 2: one-file change")
	f2a, f2b, err := interleave(*pairs,
		func() (time.Duration, error) { change(); return rawRsync() },
		func() (time.Duration, error) { change(); return syncPhase() })
	if err != nil {
		return err
	}

	// 4. coder ssh --stdio processes started by a warm run.
	logf("figure 4: coder ssh --stdio processes per warm run")
	count, err := countProxies(e, repo, lease)
	if err != nil {
		return err
	}

	fmt.Printf("\ncrabbox bench (%s, %d pairs, interleaved; medians)\n", time.Now().UTC().Format("2006-01-02"), *pairs)
	fmt.Printf("%-52s %10s %10s %7s %7s\n", "figure", "floor", "crabbox", "ratio", "target")
	row := func(name string, a, b []time.Duration, target float64) {
		ma, mb := median(a), median(b)
		r := float64(mb) / float64(ma)
		if target <= 0 {
			fmt.Printf("%-52s %10s %10s %7.2f %7s\n", name, ma.Round(time.Millisecond), mb.Round(time.Millisecond), r, "-")
			return
		}
		ok := "ok"
		if r > target {
			ok = "MISSED"
		}
		fmt.Printf("%-52s %10s %10s %7.2f %5.1f %s\n", name, ma.Round(time.Millisecond), mb.Round(time.Millisecond), r, target, ok)
	}
	row("1 warm no-change run vs list+ssh", f1a, f1b, 1.3)
	row(fmt.Sprintf("1b same, in the %d-file repo (informational)", *files), f1ba, f1bb, 0)
	row(fmt.Sprintf("2 one-file change in %d files: sync vs raw rsync", *files), f2a, f2b, 1.2)
	row(fmt.Sprintf("3 first sync of %d files vs raw rsync", *files), f3a, f3b, 1.2)
	ok := "ok"
	if count != 1 {
		ok = "MISSED"
	}
	fmt.Printf("%-52s %10s %10d %7s %5d %s\n", "4 coder ssh --stdio processes per warm run", "-", count, "-", 1, ok)
	return nil
}

func genRepo(e *env, repo string, n int, template, workRoot string) error {
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
	cfg := fmt.Sprintf("provider: coder\ncoder:\n  template: %s\n  workRoot: %s\n", template, workRoot)
	if err := os.WriteFile(filepath.Join(repo, "crabbox.yaml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"-c", "user.email=b@example.com", "-c", "user.name=b", "commit", "-qm", "gen"}} {
		if out, err := sh(5*time.Minute, repo, e.environ, "git", args...); err != nil {
			return fmt.Errorf("git %v: %v\n%s", args, err, out)
		}
	}
	return nil
}

// countProxies runs one warm run with a coder wrapper that logs its argv.
func countProxies(e *env, repo, lease string) (int, error) {
	logPath := filepath.Join(e.tmp, "coder-calls.log")
	wrapper := filepath.Join(e.tmp, "coder-logged")
	script := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$*\" >> %q\nexec %q \"$@\"\n", logPath, e.coder)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		return 0, err
	}
	// One run to settle (known_hosts for the new ProxyCommand), then count.
	if out, err := sh(time.Minute, repo, e.environ, e.crabbox, "run", "--id", lease, "--coder-cli", wrapper, "--", "true"); err != nil {
		return 0, fmt.Errorf("%v\n%s", err, out)
	}
	os.Remove(logPath)
	if out, err := sh(time.Minute, repo, e.environ, e.crabbox, "run", "--id", lease, "--coder-cli", wrapper, "--", "true"); err != nil {
		return 0, fmt.Errorf("%v\n%s", err, out)
	}
	b, _ := os.ReadFile(logPath)
	return strings.Count(string(b), "ssh --stdio"), nil
}

func interleave(n int, a, b func() (time.Duration, error)) ([]time.Duration, []time.Duration, error) {
	var as, bs []time.Duration
	for i := 0; i < n; i++ {
		first, second := a, b
		if i%2 == 1 { // alternate the order so drift hits both sides
			first, second = b, a
		}
		d1, err := first()
		if err != nil {
			return nil, nil, err
		}
		d2, err := second()
		if err != nil {
			return nil, nil, err
		}
		if i%2 == 1 {
			d1, d2 = d2, d1
		}
		as, bs = append(as, d1), append(bs, d2)
		logf("  pair %d: floor=%s crabbox=%s", i+1, d1.Round(time.Millisecond), d2.Round(time.Millisecond))
	}
	return as, bs, nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func timingMs(out []byte, key string) (time.Duration, error) {
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			if v, ok := m[key].(float64); ok {
				return time.Duration(v) * time.Millisecond, nil
			}
		}
	}
	return 0, fmt.Errorf("no %s in timing JSON:\n%s", key, out)
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return out
}

func sh(timeout time.Duration, dir string, environ []string, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if environ != nil {
		cmd.Env = environ
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
