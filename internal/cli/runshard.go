package cli

import (
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/fanout"
	"github.com/crabbox-dev/crabbox/internal/owner"
	"github.com/crabbox-dev/crabbox/internal/remotecmd"
	"github.com/crabbox-dev/crabbox/internal/runner"
	"github.com/crabbox-dev/crabbox/internal/runs"
	"github.com/crabbox-dev/crabbox/internal/shard"
	"github.com/crabbox-dev/crabbox/internal/sshx"
	"github.com/crabbox-dev/crabbox/internal/syncer"
)

// shardFlags are run's sharding flags.
type shardFlags struct {
	shards     int
	itemsFrom  string
	glob       string
	splitBy    string
	dryRun     bool
	output     string
	failFast   bool
	pool       string
	force      bool
	shardsUsed bool
}

func addShardFlags(cmd *cobra.Command, s *shardFlags) {
	fl := cmd.Flags()
	fl.IntVar(&s.shards, "shards", 0, "Fan the run out over N workspaces (fresh, --id a,b,c or --pool NAME); one verdict")
	fl.StringVar(&s.itemsFrom, "split-items-from", "", "With --shards: split the items this local command prints (one per line, run at the repo root)")
	fl.StringVar(&s.glob, "split-glob", "", "With --shards: split the synced files matching this glob (** allowed)")
	fl.StringVar(&s.splitBy, "split-by", shard.BasisTimings, "With a split: weigh items by timings (earlier runs, else file size, else count), size (else count) or count")
	fl.BoolVar(&s.dryRun, "dry-run", false, "With --shards: print the plan (items and estimate per shard) and lease nothing")
	fl.StringVar(&s.output, "output", fanout.OutputPrefixed, "With --shards: prefixed (each line as it comes, [i/N] first) or grouped (each shard's output whole when it ends)")
	fl.BoolVar(&s.failFast, "fail-fast", false, "With --shards: stop the other shards at the first failure")
	fl.StringVar(&s.pool, "pool", "", "With --shards N: use the leases NAME-1..NAME-N (crabbox warmup --count N --slug NAME)")
	fl.BoolVar(&s.force, "force", false, "Allow --shards above run.maxShards")
}

// validateShardFlags checks the sharding flags against each other and the
// run's other flags (usage errors, exit 2).
func validateShardFlags(cmd *cobra.Command, o *runOptions) error {
	s := &o.shard
	s.shardsUsed = cmd.Flags().Changed("shards")
	if !s.shardsUsed {
		for _, name := range []string{"split-items-from", "split-glob", "split-by", "dry-run", "output", "fail-fast", "pool"} {
			if cmd.Flags().Changed(name) {
				return usageErr("--%s is for sharded runs; add --shards N", name)
			}
		}
		return nil
	}
	switch {
	case s.shards < 1:
		return usageErr("--shards must be 1 or more (got %d)", s.shards)
	case s.itemsFrom != "" && s.glob != "":
		return usageErr("--split-items-from and --split-glob both name the items; give one")
	case s.splitBy != shard.BasisTimings && s.splitBy != shard.BasisSize && s.splitBy != shard.BasisCount:
		return usageErr("--split-by must be timings, size or count (got %q)", s.splitBy)
	case cmd.Flags().Changed("split-by") && s.itemsFrom == "" && s.glob == "":
		return usageErr("--split-by weighs split items; add --split-items-from or --split-glob")
	case s.output != fanout.OutputPrefixed && s.output != fanout.OutputGrouped:
		return usageErr("--output must be prefixed or grouped (got %q)", s.output)
	case s.pool != "" && o.id != "":
		return usageErr("--pool and --id both name the leases; give one")
	case s.pool != "" && cmd.Flags().Changed("slug"):
		return usageErr("--pool names existing leases; --slug names fresh ones")
	case o.captureStdout != "" || o.captureStderr != "":
		return usageErr("--capture-stdout/--capture-stderr write one file; a sharded run has N outputs (use crabbox logs RUN --shard I)")
	case len(o.artifacts.downloads) > 0:
		return usageErr("--download writes one local file; a sharded run has N machines (use --artifact-glob)")
	case o.scriptStdin:
		return usageErr("--script-stdin reads stdin once; a sharded run needs the script N times (use --script FILE)")
	case o.syncOnly && (s.itemsFrom != "" || s.glob != ""):
		return usageErr("--sync-only runs no command; there is nothing to split")
	}
	if o.id != "" {
		if ids := splitIDs(o.id); len(ids) != s.shards {
			return usageErr("--id names %d lease(s) for --shards %d; give one per shard (--id a,b,c)", len(ids), s.shards)
		}
	}
	return nil
}

func splitIDs(s string) []string {
	var out []string
	for _, id := range strings.Split(s, ",") {
		if id = strings.TrimSpace(id); id != "" {
			out = append(out, id)
		}
	}
	return out
}

// firstID is the first lease of an --id list (the one that picks the
// provider from its claim).
func firstID(s string) string {
	if ids := splitIDs(s); len(ids) > 0 {
		return ids[0]
	}
	return s
}

// checkShardCount refuses more than run.maxShards workspaces without
// --force (flag names the flag that asked).
func checkShardCount(cfg *config.Config, n int, force bool, flag string) error {
	if max := cfg.Run.MaxShards; max > 0 && n > max && !force {
		return usageErr("%s %d is above run.maxShards (%d): each one is a workspace; pass --force, or raise run.maxShards", flag, n, max)
	}
	return nil
}

// runSharded is run --shards: plan, then fan the run out (fanout.Run).
func runSharded(f *Factory, cmd *cobra.Command, o *runOptions, lc *leaseCtx, base runner.Spec, store *runs.Store) error {
	ctx := cmd.Context()
	s := &o.shard
	if err := checkShardCount(lc.cfg, s.shards, s.force, "--shards"); err != nil {
		return err
	}
	// One local snapshot for every shard (and the glob's files).
	var plan *syncer.Plan
	if !base.NoSync {
		so := base.Sync
		so.RepoRoot = base.RepoRoot
		plan = syncer.Scan(ctx, f.Runner, so)
		if err := plan.Err(); err != nil {
			return err
		}
		base.Sync.Plan = plan
	}
	var items []string
	var err error
	switch {
	case s.itemsFrom != "":
		items, err = shard.FromCommand(ctx, f.Runner, base.RepoRoot, s.itemsFrom)
	case s.glob != "":
		if plan == nil {
			return usageErr("--split-glob matches the synced files; it cannot be combined with --no-sync")
		}
		items, err = shard.Glob(plan.Files(), s.glob)
	}
	if err != nil {
		return err
	}
	n := s.shards
	var p shard.Plan
	var notes []string
	split := s.itemsFrom != "" || s.glob != ""
	if split {
		var w shard.Weights
		if s.splitBy == shard.BasisTimings {
			prior, _ := store.List(runs.Filter{})
			w.Seconds = shard.Seconds(prior, store.Get, base.RepoRoot, o.argv)
		}
		if plan != nil && s.splitBy != shard.BasisCount {
			w.Size = func(item string) (int64, bool) { return sizeOf(plan, item) }
		}
		p = shard.Pack(items, n, w)
		notes = shard.Describe(p)
		if len(p.Shards) < n {
			notes = append(notes, fmt.Sprintf("note: %d items for --shards %d: running %d shards", len(items), n, len(p.Shards)))
			n = len(p.Shards)
		}
	} else {
		notes = []string{fmt.Sprintf("plan shards=%d (no split: each shard gets CRABBOX_SHARD_INDEX and CRABBOX_SHARD_TOTAL)", n)}
	}
	if s.dryRun {
		for _, l := range notes {
			fmt.Fprintln(f.IO.Out, l)
		}
		fmt.Fprintln(f.IO.ErrOut, "dry run: nothing leased")
		return nil
	}

	idents := make([]string, n)
	switch {
	case o.id != "":
		copy(idents, splitIDs(o.id))
	case s.pool != "":
		for i := range idents {
			idents[i] = poolSlug(s.pool, i+1)
		}
	}
	shell := base.Shell || (base.Script == nil && remotecmd.NeedsShell(base.Argv))
	var quote func(string) string
	if shell {
		quote = sshx.Quote
	}
	specs := make([]runner.Spec, n)
	for i := range specs {
		sp := base
		sp.Ident, sp.Shell, sp.Stdin = idents[i], shell, nil
		if sp.Ident == "" && base.Slug != "" {
			sp.Slug = poolSlug(base.Slug, i+1)
		}
		sh := &runs.Shard{Index: i + 1, Total: n}
		if split {
			ps := p.Shards[i]
			sh.Items = ps.Items
			if p.Basis == shard.BasisTimings {
				sh.EstimateSec = ps.Estimate
			}
			sp.Argv = shard.Argv(base.Argv, ps.Items, quote)
		}
		sp.Shard = sh
		specs[i] = sp
	}
	stateDir := config.StateDir(f.Env)
	res, runErr := fanout.Run(ctx, fanout.Options{
		Specs: specs, Command: o.argv, Shell: base.Shell, RepoRoot: base.RepoRoot, Provider: lc.provider.Name(),
		Store: store, Out: f.IO.Out, ErrOut: f.IO.ErrOut, Output: s.output, FailFast: s.failFast, Notes: notes, Now: f.Now,
		Deps: func(index int, notes io.Writer) (runner.Deps, func(), error) {
			sl, err := lc.forShard(notes)
			if err != nil {
				return runner.Deps{}, nil, err
			}
			return runner.Deps{
				Provider: sl.provider, Tunnels: sl.tunnels, Runner: f.Runner, Runs: store, Owner: sl.owner,
				StateDir: stateDir, Now: f.Now, Notes: notes, Ready: sl.ready, Open: sl.open, EndProgress: sl.endProgress,
			}, sl.close, nil
		},
	})
	_ = res
	return runErr
}

// poolSlug is the slug of a pool's lease i (NAME-i).
func poolSlug(name string, i int) string { return name + "-" + strconv.Itoa(i) }

// sizeOf is an item's size in the snapshot: a file's, or the files'
// below a directory.
func sizeOf(p *syncer.Plan, item string) (int64, bool) {
	rel := strings.TrimSuffix(path.Clean(strings.TrimPrefix(item, "./")), "/")
	if n, ok := p.Size(rel); ok {
		return n, true
	}
	var total int64
	found := false
	for _, f := range p.Files() {
		if strings.HasPrefix(f, rel+"/") {
			n, _ := p.Size(f)
			total += n
			found = true
		}
	}
	return total, found
}

// forShard is a lease context for one shard of a sharded run: the same
// configuration and claims, a provider and tunnels of its own, and plain
// progress written to notes (several shards' progress cannot share one
// terminal line).
func (lc *leaseCtx) forShard(notes io.Writer) (*leaseCtx, error) {
	f := lc.f
	sf := &Factory{IO: f.IO.Plain(notes, notes), Env: f.Env, Runner: f.Runner, Now: f.Now, Getwd: f.Getwd}
	stateDir := config.StateDir(f.Env)
	sl := &leaseCtx{f: sf, cfg: lc.cfg, repoRoot: lc.repoRoot, claims: lc.claims,
		tunnels: sshx.NewPool(f.Runner, sessionOptions(lc.cfg, stateDir, true))}
	sl.owner = &owner.Checker{StateDir: stateDir, Claims: lc.claims, Now: f.Now,
		Warn: func(msg string) { fmt.Fprintf(notes, "warning: %s\n", msg) }}
	p, err := sl.newProvider(lc.cfg.Provider, true)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	sl.provider = p
	return sl, nil
}
