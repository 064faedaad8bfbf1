package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/crabbox-dev/crabbox/internal/artifacts"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/runs"
)

func init() {
	extraCommands = append(extraCommands, newArtifactsCmd)
}

func newArtifactsCmd(f *Factory) *cobra.Command {
	var (
		asJSON  bool
		extract string
	)
	cmd := &cobra.Command{
		Use:   "artifacts RUN_ID",
		Short: "List or extract a recorded run's fetched files (local, read-only)",
		Long: `List the files a run fetched with --artifact-glob and --require-artifact,
as recorded on this machine (the run's record dir holds them):

  artifacts run=<id> files=N bytes=N dir=<dir>
  <size> <sha256> <path>

--json prints {"run": "<id>", "dir": "<dir>", "artifacts": [{"path",
"size", "sha256"}]} ([] when there are none).

--extract DIR copies them to DIR/<path> (DIR and new directories 0700,
files 0600, replacing existing files, never through a symlink out of DIR).
Each copy is checked against its recorded size and SHA-256 first; a file
that no longer matches is not written and the command fails naming it.

EXIT STATUS
  0  listed or extracted (also when the run has no artifacts)
  1  the run could not be read, or an artifact could not be extracted
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
			dir := store.ArtifactsDir(rec.ID)
			list := rec.Artifacts
			if list == nil {
				list = []runs.Artifact{}
			}
			if extract != "" {
				n, err := artifacts.Extract(dir, list, extract)
				if err != nil {
					return exitcode.Errorf(exitcode.Failure, "extracting the artifacts of %s: %v (%d extracted)", rec.ID, err, n)
				}
				fmt.Fprintf(f.IO.ErrOut, "extracted %d files of %s to %s\n", n, rec.ID, extract)
				return nil
			}
			if asJSON {
				return histJSON(f.IO.Out, struct {
					Run       string          `json:"run"`
					Dir       string          `json:"dir"`
					Artifacts []runs.Artifact `json:"artifacts"`
				}{rec.ID, dir, list})
			}
			if len(list) == 0 {
				fmt.Fprintf(f.IO.Out, "no artifacts recorded for %s\n", rec.ID)
				return nil
			}
			fmt.Fprintf(f.IO.Out, "artifacts run=%s files=%d bytes=%d dir=%s\n", rec.ID, len(list), runs.ArtifactBytes(list), dir)
			for _, a := range list {
				fmt.Fprintf(f.IO.Out, "%d %s %s\n", a.Size, a.SHA256, runs.Escape(a.Path))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "Print JSON")
	cmd.Flags().StringVar(&extract, "extract", "", "Copy the artifacts to this directory")
	return cmd
}
