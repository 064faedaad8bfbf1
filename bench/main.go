// Command bench measures crabbox against the raw floor on the Coder lab
// (make bench). By default it brings up a private lab (its state in a temp
// dir) and takes it down at the end; -lab-state DIR uses a lab that is
// already up instead and leaves it running. Every timed figure is a
// series of interleaved A/B pairs (the order alternates each pair, so
// drift hits both sides); the table shows medians, min–max and the ratio
// of the medians against the target.
//
// Figures (select with -only, e.g. -only warm,sync):
//
//	warm     1  warm no-change `run --id L -- true` within ssh.persist, small
//	            repo, vs the floor (`coder list -o json` + one fresh proxied
//	            `ssh true`): ≤ 0.20
//	         1b the same in the generated 20,000-file repo: ≤ 0.30 of its floor
//	expired  1c the same (small repo) right after the lease's ssh master
//	            ended (ssh.persist elapsed): ≤ 1.05
//	sync     2  first sync of the 20,000-file repo (--full-resync) vs a raw
//	            `rsync -a --files-from` of the same manifest through the
//	            same ProxyCommand into an empty dir: ≤ 1.05
//	         3  a one-file change: crabbox's sync phase vs the same raw rsync:
//	            ≤ 1.05
//	procs    4  programs a warm run starts (coder, ssh, rsync, git, counted
//	            through a PATH of logging wrappers), within ssh.persist and
//	            after the master ended; aim: 0 coder, 1 ssh, 1 git
//
// Exit status: 0 when every target is met, 2 when one is missed, 1 on an
// error.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

var (
	pairs    = flag.Int("pairs", 7, "A/B pairs per figure")
	files    = flag.Int("files", 20000, "files in the generated big repo")
	keep     = flag.Bool("keep", false, "leave the lab, the leases and the temp dir")
	only     = flag.String("only", "", "comma-separated figure groups to run (default all): "+strings.Join(figureNames(), ","))
	labState = flag.String("lab-state", "", "use the lab already up with this CODER_LAB_STATE (not brought up or down)")
)

// A figure group: one function that measures and returns table rows.
type figure struct {
	name string
	run  func(*bench) ([]row, error)
}

// figures in the order they run. Each is a separate function; -only
// selects them by name.
var figures = []figure{
	{"warm", figWarm},
	{"expired", figExpired},
	{"sync", figSync},
	{"procs", figProcs},
	{"shard", figShard}, // bench/shard.go (issue 12)
}

func figureNames() []string {
	var out []string
	for _, f := range figures {
		out = append(out, f.name)
	}
	return out
}

// selected are the figures -only names (all without it).
func selected(spec string) ([]figure, error) {
	if strings.TrimSpace(spec) == "" {
		return figures, nil
	}
	var out []figure
	for _, name := range strings.Split(spec, ",") {
		name = strings.TrimSpace(name)
		i := slices.IndexFunc(figures, func(f figure) bool { return f.name == name })
		if i < 0 {
			return nil, fmt.Errorf("-only: unknown figure %q (known: %s)", name, strings.Join(figureNames(), ", "))
		}
		out = append(out, figures[i])
	}
	return out, nil
}

func main() {
	flag.Parse()
	code, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run() (int, error) {
	figs, err := selected(*only)
	if err != nil {
		return 0, err
	}
	b, err := setup()
	if err != nil {
		return 0, err
	}
	defer b.close()
	var rows []row
	for _, f := range figs {
		logf("figures %s", f.name)
		rs, err := f.run(b)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", f.name, err)
		}
		rows = append(rows, rs...)
	}
	missed := printTable(os.Stdout, rows, *pairs)
	if missed > 0 {
		return 2, nil
	}
	return 0, nil
}

// bench is the lab, the crabbox binary and the environment every command
// runs with, plus the leases made so far.
type bench struct {
	root, tmp, crabbox, coder, template, home string
	environ                                   []string
	leases                                    map[string]*lease
	cleanups                                  []func()
}

func setup() (*bench, error) {
	root, _ := filepath.Abs(".")
	tmp, err := os.MkdirTemp("", "crabbox-bench-")
	if err != nil {
		return nil, err
	}
	b := &bench{root: root, tmp: tmp, crabbox: filepath.Join(tmp, "crabbox"), leases: map[string]*lease{}}
	if !*keep {
		b.cleanups = append(b.cleanups, func() { os.RemoveAll(tmp) })
	}
	lab := filepath.Join(root, "scripts", "coder-lab", "lab")
	if *labState != "" {
		os.Setenv("CODER_LAB_STATE", *labState)
		if out, err := sh(time.Minute, root, nil, lab, "status"); err != nil {
			b.close()
			return nil, fmt.Errorf("-lab-state %s: lab status: %v\n%s", *labState, err, out)
		}
	} else {
		os.Setenv("CODER_LAB_STATE", filepath.Join(tmp, "lab"))
		if !*keep {
			b.cleanups = append(b.cleanups, func() { sh(2*time.Minute, root, nil, lab, "down") })
		}
	}
	if out, err := sh(5*time.Minute, root, nil, "go", "build", "-o", b.crabbox, "./cmd/crabbox"); err != nil {
		b.close()
		return nil, fmt.Errorf("build: %v\n%s", err, out)
	}
	if *labState == "" {
		logf("lab up")
		if out, err := sh(10*time.Minute, root, nil, lab, "up"); err != nil {
			b.close()
			return nil, fmt.Errorf("lab up: %v\n%s", err, out)
		}
	}
	out, err := sh(time.Minute, root, nil, "bash", "-c", `eval "$("$0" env)" && printf '%s\0' "$PATH" "$CODER_CONFIG_DIR" "$CODER_URL" "$CODER_LAB_TEMPLATE"`, lab)
	if err != nil {
		b.close()
		return nil, fmt.Errorf("lab env: %v\n%s", err, out)
	}
	p := strings.Split(string(out), "\x00")
	if len(p) < 4 {
		b.close()
		return nil, fmt.Errorf("lab env output %q", out)
	}
	b.coder = filepath.Join(strings.SplitN(p[0], ":", 2)[0], "coder")
	b.home = filepath.Join(tmp, "home")
	// The generated repos' crabbox.yaml sets coder.workRoot: the bench
	// trusts its own checkouts, as CI would.
	b.environ = []string{"PATH=" + p[0], "HOME=" + b.home, "CODER_CONFIG_DIR=" + p[1], "CODER_URL=" + p[2], "CRABBOX_TRUST_REPO_CONFIG=1",
		"XDG_CONFIG_HOME=" + filepath.Join(b.home, ".config"), "XDG_STATE_HOME=" + filepath.Join(b.home, ".local", "state"), "LANG=C.UTF-8"}
	b.template = p[3]
	return b, nil
}

// close stops the leases and undoes setup, last first.
func (b *bench) close() {
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		b.cleanups[i]()
	}
	b.cleanups = nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
