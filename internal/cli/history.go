package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/iostreams"
	"github.com/crabbox-dev/crabbox/internal/results"
	"github.com/crabbox-dev/crabbox/internal/runs"
)

func init() {
	extraCommands = append(extraCommands, newHistoryCmd, newLogsCmd, newResultsCmd)
}

// historyStore opens the local run history; it never contacts a provider.
func (f *Factory) historyStore() (*runs.Store, error) {
	dir := config.StateDir(f.Env)
	if dir == "" {
		return nil, exitcode.Errorf(exitcode.Usage, "cannot locate the state directory: set XDG_STATE_HOME or HOME")
	}
	return runs.New(dir), nil
}

type historyOptions struct {
	lease  string
	state  string
	limit  int
	asJSON bool
	shards bool
}

func newHistoryCmd(f *Factory) *cobra.Command {
	o := &historyOptions{}
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List recorded runs, newest first (local, read-only)",
		Long: `List the runs recorded on this machine, newest first. Every 'crabbox run'
is recorded under the state directory ($XDG_STATE_HOME/crabbox/runs, else
~/.local/state/crabbox/runs); history reads only that: no provider, no
network.

One line per run:
  <runID> <leaseID|-> <slug|-> <state> exit=<n|-> duration=<d> started=<RFC3339> [artifacts=<n>] command=<cmd>

artifacts= appears for a run that fetched files (crabbox artifacts RUN).

A sharded run (run --shards) is one line with its shards' states and wall
times: shards=N shard_states=1:succeeded:8.2s,2:failed:7.1s,... Its shards'
own records are listed with --shards (or when --lease names one's lease).

duration covers the whole 'crabbox run', the release of the lease included:
it is the run summary's total=.

States: running, succeeded, failed, interrupted. A run whose crabbox process
is gone without finishing it is shown (and recorded) as interrupted.

--lease matches a lease ID or a slug. --limit 0 lists every run. --json
prints an array of run records ([] when there are none).

EXIT STATUS
  0  listed (possibly nothing)
  1  the run history could not be read
  2  usage error (unknown --state, negative --limit)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.state != "" && !runs.ValidState(o.state) {
				return usageErr("invalid --state %q: want one of %s", o.state, strings.Join(runs.States, ", "))
			}
			if o.limit < 0 {
				return usageErr("invalid --limit %d: want 0 (no limit) or more", o.limit)
			}
			store, err := f.historyStore()
			if err != nil {
				return err
			}
			recs, skipped, err := store.Scan(runs.Filter{LeaseID: o.lease, State: o.state})
			if err != nil {
				return fmt.Errorf("read run history: %w", err)
			}
			if !o.shards && o.lease == "" {
				recs = slices.DeleteFunc(recs, func(r runs.Record) bool { return r.IsShard() })
			}
			if o.limit > 0 && len(recs) > o.limit {
				recs = recs[:o.limit]
			}
			if skipped > 0 {
				fmt.Fprintf(f.IO.ErrOut, "warning: skipped %d unreadable run record(s) under %s\n", skipped, store.RunsDir())
			}
			if o.asJSON {
				return histJSON(f.IO.Out, recs)
			}
			if len(recs) == 0 {
				fmt.Fprintln(f.IO.ErrOut, "no runs recorded")
			}
			for _, r := range recs {
				fmt.Fprintln(f.IO.Out, histLine(r))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&o.lease, "lease", "", "Only runs on this lease (lease ID or slug)")
	cmd.Flags().StringVar(&o.state, "state", "", "Only runs in this state: running|succeeded|failed|interrupted")
	cmd.Flags().IntVar(&o.limit, "limit", 50, "Show at most N runs (0: all)")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "Print JSON")
	cmd.Flags().BoolVar(&o.shards, "shards", false, "Also list each shard's own run of a sharded run")
	return cmd
}

// histJSON is writeJSON without HTML escaping: commands and logs keep
// their &, < and > readable.
func histJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func histLine(r runs.Record) string {
	exit := "-"
	if r.ExitCode != nil {
		exit = strconv.Itoa(*r.ExitCode)
	}
	duration := "-"
	if !r.EndedAt.IsZero() {
		duration = iostreams.FormatDuration(r.Duration())
	}
	arts := ""
	if n := len(r.Artifacts); n > 0 {
		arts = " artifacts=" + strconv.Itoa(n)
	}
	return fmt.Sprintf("%s %s %s %s exit=%s duration=%s started=%s%s%s command=%s",
		r.ID, dash(r.LeaseID), dash(r.Slug), r.State, exit, duration,
		r.StartedAt.UTC().Format(time.RFC3339), arts, shardsField(r), runs.CommandLine(r.Command, r.Shell))
}

// shardsField is a sharded run's " shards=N shard_states=i:state:wall,...",
// a shard's " shard=i/N parent=RUN", else "".
func shardsField(r runs.Record) string {
	switch {
	case r.IsSharded():
		parts := make([]string, len(r.Shards))
		for i, s := range r.Shards {
			wall := "-"
			if s.WallMs > 0 {
				wall = iostreams.FormatDuration(time.Duration(s.WallMs) * time.Millisecond)
			}
			parts[i] = fmt.Sprintf("%d:%s:%s", s.Index, s.State, wall)
		}
		return fmt.Sprintf(" shards=%d shard_states=%s", len(r.Shards), strings.Join(parts, ","))
	case r.IsShard():
		return fmt.Sprintf(" shard=%d/%d parent=%s", r.Shard.Index, r.Shard.Total, r.Shard.Parent)
	}
	return ""
}

func newLogsCmd(f *Factory) *cobra.Command {
	var (
		tail       int
		asJSON     bool
		bundlePath bool
		shardIdx   int
	)
	cmd := &cobra.Command{
		Use:   "logs RUN_ID",
		Short: "Print a recorded run's output (local, read-only)",
		Long: `Print the combined stdout and stderr a run produced, as recorded on this
machine. Only the last 8 MiB of a run's output are kept; when more was
written a note on stderr says so. When the log could not be written to
the end (e.g. the disk was full) a note says so, why, and after how many
bytes. --tail N prints only the last N lines.

--json prints {"run": <record>, "log": "<output>", "logTruncated": <bool>,
"logIncomplete": <bool>}.

--bundle prints the path of the run's failure bundle (bundle.tgz, written
for a failed or interrupted run) instead; a run without one is exit 5.

A sharded run's log is its prefixed output and closing lines; --shard I
prints shard I's own run instead (its log, --json or --bundle).

EXIT STATUS
  0  printed
  1  the run could not be read
  2  usage error (invalid run ID, negative --tail)
  5  no such run`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tail < 0 {
				return usageErr("invalid --tail %d: want 0 (everything) or more", tail)
			}
			store, err := f.historyStore()
			if err != nil {
				return err
			}
			id := args[0]
			rec, err := store.Get(id)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("shard") {
				if rec, err = shardRecord(store, rec, shardIdx); err != nil {
					return err
				}
				id = rec.ID
			}
			if bundlePath {
				return printBundlePath(f, store, rec)
			}
			log, truncated, err := store.ReadLog(id, tail)
			if err != nil {
				return err
			}
			if asJSON {
				return histJSON(f.IO.Out, struct {
					Run           *runs.Record `json:"run"`
					Log           string       `json:"log"`
					LogTruncated  bool         `json:"logTruncated"`
					LogIncomplete bool         `json:"logIncomplete"`
				}{rec, log, truncated, rec.LogIncomplete})
			}
			if truncated {
				fmt.Fprintf(f.IO.ErrOut, "note: output truncated: %d bytes written, the last %d kept\n", rec.LogBytes, runs.MaxLogBytes)
			}
			if rec.LogIncomplete {
				fmt.Fprintln(f.IO.ErrOut, "note: "+runs.LogIncompleteNote(rec))
			}
			if rec.State == runs.StateRunning {
				fmt.Fprintf(f.IO.ErrOut, "note: run %s is still running\n", id)
			}
			_, err = io.WriteString(f.IO.Out, log)
			return err
		},
	}
	cmd.Flags().IntVar(&tail, "tail", 0, "Print only the last N lines (0: everything kept)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "Print JSON")
	cmd.Flags().BoolVar(&bundlePath, "bundle", false, "Print the path of the run's failure bundle")
	cmd.Flags().IntVar(&shardIdx, "shard", 0, "Of a sharded run, shard I's own run (1-based)")
	return cmd
}

// shardRecord is shard index's own record of the sharded run rec.
func shardRecord(store *runs.Store, rec *runs.Record, index int) (*runs.Record, error) {
	if !rec.IsSharded() {
		return nil, usageErr("run %s is not a sharded run; --shard needs one (crabbox history shows shards=N)", rec.ID)
	}
	if index < 1 || index > len(rec.Shards) {
		return nil, usageErr("--shard %d: run %s has shards 1 to %d", index, rec.ID, len(rec.Shards))
	}
	ref := rec.Shards[index-1]
	if ref.RunID == "" || ref.State == runs.StatePending {
		return nil, exitcode.Errorf(exitcode.NotFound, "shard %d of run %s never started", index, rec.ID)
	}
	return store.Get(ref.RunID)
}

// printBundlePath prints rec's failure bundle path, or fails (exit 5)
// with the next step when it has none.
func printBundlePath(f *Factory, store *runs.Store, rec *runs.Record) error {
	p := store.BundlePath(rec.ID)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
		fmt.Fprintln(f.IO.Out, p)
		return nil
	}
	why := "bundles are written only for failed or interrupted runs"
	switch rec.State {
	case runs.StateFailed:
		why = "it failed before bundles were written, or the bundle was removed"
	case runs.StateInterrupted:
		why = "its crabbox ended before writing one"
	case runs.StateRunning:
		why = "it is still running"
	}
	return exitcode.Errorf(exitcode.NotFound, "run %s (%s) has no failure bundle: %s; %s", rec.ID, rec.State, why, exitcode.Next("crabbox logs "+rec.ID))
}

func newResultsCmd(f *Factory) *cobra.Command {
	var (
		failedOnly bool
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "results RUN_ID",
		Short: "Show a recorded run's test results (local, read-only)",
		Long: `Show the JUnit summary recorded for a run:

  results format=junit files=N suites=N tests=N failures=N errors=N skipped=N time=12.3s
  failed: <suite> <name> <message>

A run without collected test results prints 'no test results recorded for
<id>'. A run that fetched files also prints
'artifacts files=N bytes=N (crabbox artifacts <id>)'. --failed-only prints only the failed: lines. --json prints the stored
summary (null when there is none); --json --failed-only prints only the
failed array ([] when none).

EXIT STATUS
  0  shown (also when the run has no results or failed tests)
  1  the run could not be read
  2  usage error (invalid run ID)
  5  no such run`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := f.historyStore()
			if err != nil {
				return err
			}
			rec, err := store.Get(args[0])
			if err != nil {
				return err
			}
			sum := rec.Results
			if asJSON {
				if failedOnly {
					failed := []results.Failure{}
					if sum != nil && sum.Failed != nil {
						failed = sum.Failed
					}
					return histJSON(f.IO.Out, failed)
				}
				return histJSON(f.IO.Out, sum)
			}
			if sum == nil {
				fmt.Fprintf(f.IO.Out, "no test results recorded for %s\n", rec.ID)
				if !failedOnly {
					printArtifactCount(f, rec)
				}
				return nil
			}
			if !failedOnly {
				fmt.Fprintln(f.IO.Out, sum.Line())
				printArtifactCount(f, rec)
			}
			for _, fl := range sum.Failed {
				fmt.Fprintln(f.IO.Out, histFailedLine(fl))
			}
			if shown := len(sum.Failed); shown < sum.Failures+sum.Errors {
				fmt.Fprintf(f.IO.ErrOut, "note: %d more failed test(s) not recorded individually\n", sum.Failures+sum.Errors-shown)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&failedOnly, "failed-only", false, "Only the failed tests")
	cmd.Flags().BoolVar(&asJSON, "json", false, "Print JSON")
	return cmd
}

// printArtifactCount prints "artifacts files=N bytes=N" for a run that
// fetched files.
func printArtifactCount(f *Factory, rec *runs.Record) {
	if n := len(rec.Artifacts); n > 0 {
		fmt.Fprintf(f.IO.Out, "artifacts files=%d bytes=%d (crabbox artifacts %s)\n", n, runs.ArtifactBytes(rec.Artifacts), rec.ID)
	}
}

// histFailedLine is "failed: <suite> <name> <message>" on one line (the
// message's first line; "-" for empty parts).
func histFailedLine(fl results.Failure) string {
	name := fl.Name
	if name == "" {
		name = fl.Classname
	}
	msg := results.FirstLine(fl.Message)
	if msg == "" {
		msg = fl.Kind
	}
	return "failed: " + runs.Escape(dash(fl.Suite)) + " " + runs.Escape(dash(name)) + " " + runs.Escape(dash(msg))
}
