package cli

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/iostreams"
	"github.com/crabbox-dev/crabbox/internal/provider"
)

type warmupOptions struct {
	slug       string
	keep       bool
	reclaim    bool
	timingJSON bool
	leaseID    string
	count      int
	force      bool
}

func newWarmupCmd(f *Factory) *cobra.Command {
	o := &warmupOptions{}
	cmd := &cobra.Command{
		Use:   "warmup",
		Short: "Create a Coder workspace, wait until it answers over SSH, and keep it",
		Long: `Create a lease-unique Coder workspace from the configured template, record a
local claim binding it to this repository, wait until it answers over SSH,
and keep it for later 'crabbox run --id', 'crabbox ssh' and 'crabbox stop'.

stdout:
  leased <lease> slug=<slug> provider=coder server=<owner/name> type=<template> ...
  ready ssh=coder@<host>:22 network=public workroot=<dir>
  warmup complete total=<duration>

If acquisition fails after the workspace was created and --keep=false, the
workspace is rolled back with the configured release action (stop, or delete
with --coder-delete-on-release).

--count N --slug NAME makes a pool of N leases at once, slugs NAME-1 to
NAME-N (progress lines prefixed [i/N]), for 'crabbox run --shards N --pool
NAME'. Each ready lease prints its lines as above; the exit code is the
first failing lease's (the others are kept). More than run.maxShards needs
--force.

EXIT STATUS
  0  ready
  1  failure (coder create failed, ...)
  2  usage, configuration or claim conflict
  5  timed out waiting, or the workspace was not found after create`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWarmup(f, cmd, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.slug, "slug", "", "Friendly lease slug (creation-time only; normalized)")
	fl.BoolVar(&o.keep, "keep", true, "Keep the workspace after warmup and when a later step fails")
	fl.BoolVar(&o.reclaim, "reclaim", false, "Take over a claim bound to another repository")
	fl.BoolVar(&o.timingJSON, "timing-json", false, "Print a timing JSON object on stderr")
	fl.StringVar(&o.leaseID, "lease-id", "", "Fixed idempotent lease ID (not supported by provider=coder)")
	fl.IntVar(&o.count, "count", 1, "Make N leases at once, slugs NAME-1..NAME-N (needs --slug NAME): a pool for run --shards N --pool NAME")
	fl.BoolVar(&o.force, "force", false, "Allow --count above run.maxShards")
	addConfigFlags(cmd)
	return cmd
}

func runWarmup(f *Factory, cmd *cobra.Command, o *warmupOptions) error {
	start := f.Now()
	slug, err := slugFlag(cmd, o.slug)
	if err != nil {
		return err
	}
	lc, err := f.openLease(cmd)
	if err != nil {
		return err
	}
	defer lc.close()
	if o.leaseID != "" {
		return usageErr("provider=%s does not support fixed idempotent lease IDs (--lease-id)", lc.provider.Name())
	}
	if cmd.Flags().Changed("count") {
		return warmupPool(f, cmd, o, lc, slug, start)
	}
	return warmupOne(f, cmd, o, lc, slug, start, &sync.Mutex{})
}

// warmupOne makes one lease ready (out serializes its stdout lines with
// the other leases of a pool).
func warmupOne(f *Factory, cmd *cobra.Command, o *warmupOptions, lc *leaseCtx, slug string, start time.Time, out *sync.Mutex) error {
	l, err := lc.provider.Acquire(cmd.Context(), provider.AcquireRequest{
		Slug: slug, Keep: o.keep, RepoRoot: lc.repoRoot, Reclaim: o.reclaim, Ready: lc.ready,
	})
	lc.endProgress(err)
	total := f.Now().Sub(start)
	if o.timingJSON {
		writeTiming(f, lc.provider.Name(), l, total, exitcode.Code(err))
	}
	if err != nil {
		return err
	}
	// The owner record: this state dir owns the workspace.
	sess, err := lc.session(l)
	if err != nil {
		return err
	}
	if err := lc.claimOwner(cmd.Context(), sess, l, o.reclaim, func(ident string) string {
		return "crabbox run --reclaim --id " + ident + " -- …"
	}); err != nil {
		return err
	}
	expires := "-"
	if !l.ExpiresAt.IsZero() {
		expires = rfc3339(l.ExpiresAt)
	}
	out.Lock()
	defer out.Unlock()
	fmt.Fprintf(f.IO.Out, "leased %s slug=%s provider=%s server=%s type=%s ip=- idle_timeout=%s expires=%s workspace=%s\n",
		l.ID, dash(l.Slug), l.Provider, l.Ref, l.ServerType, lc.cfg.IdleTimeout, expires, l.Workspace)
	fmt.Fprintf(f.IO.Out, "ready ssh=%s@%s:%d network=public workroot=%s\n", l.Target.User, l.Target.Host, l.Target.Port, l.Target.WorkRoot)
	fmt.Fprintf(f.IO.Out, "warmup complete total=%s\n", total.Round(time.Millisecond))
	return nil
}

// warmupPool is warmup --count N: N leases NAME-1..NAME-N made at once,
// each with a lease context of its own.
func warmupPool(f *Factory, cmd *cobra.Command, o *warmupOptions, lc *leaseCtx, slug string, start time.Time) error {
	switch {
	case o.count < 1:
		return usageErr("--count must be 1 or more (got %d)", o.count)
	case slug == "":
		return usageErr("--count names its leases NAME-1..NAME-N; give the pool's name with --slug NAME")
	}
	if err := checkShardCount(lc.cfg, o.count, o.force, "--count"); err != nil {
		return err
	}
	var lines iostreams.Lines
	var out sync.Mutex
	errs := make([]error, o.count)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			notes := lines.Writer(f.IO.ErrOut, fmt.Sprintf("[%d/%d] ", i+1, o.count))
			defer notes.Flush()
			sl, err := lc.forShard(notes)
			if err != nil {
				errs[i] = err
				return
			}
			defer sl.close()
			so := *o
			if errs[i] = warmupOne(f, cmd, &so, sl, poolSlug(slug, i+1), start, &out); errs[i] != nil {
				fmt.Fprintf(notes, "error: %v\n", errs[i])
			}
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return exitcode.Errorf(exitcode.Code(err), "warmup of %s failed: %v", poolSlug(slug, i+1), err)
		}
	}
	fmt.Fprintf(f.IO.Out, "pool %s ready count=%d total=%s (crabbox run --shards %d --pool %s -- …)\n", slug, o.count, f.Now().Sub(start).Round(time.Millisecond), o.count, slug)
	return nil
}

func writeTiming(f *Factory, name string, l *provider.Lease, total time.Duration, code int) {
	t := map[string]any{"provider": name, "totalMs": total.Milliseconds(), "exitCode": code}
	if l != nil {
		t["leaseId"], t["slug"], t["workspace"] = l.ID, l.Slug, l.Ref
	}
	b, _ := json.Marshal(t)
	fmt.Fprintln(f.IO.ErrOut, string(b))
}
