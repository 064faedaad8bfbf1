package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

func newClaimsCmd(f *Factory) *cobra.Command {
	c := &cobra.Command{
		Use:   "claims",
		Short: "Inspect local lease claims",
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List local claim files and any malformed ones (read-only)",
		Long: `List the local claim files that bind leases to repositories. This reads only
local state: no provider is contacted.

EXIT STATUS
  0  all claim files are valid (or there are none)
  2  at least one claim file is malformed (listed under problems)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			store := claims.New(config.StateDir(f.Env))
			list, problems, err := store.List()
			if err != nil {
				return err
			}
			out := claims.ListOutput{Version: 1, Source: "local-claims", Claims: []claims.View{}, Problems: []claims.Problem{}}
			for _, cl := range list {
				out.Claims = append(out.Claims, cl.View())
			}
			out.Problems = append(out.Problems, problems...)
			if asJSON {
				enc := json.NewEncoder(f.IO.Out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(out); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(f.IO.Out, "unverified local state")
				if len(list) == 0 {
					fmt.Fprintln(f.IO.Out, "no claims")
				}
				for _, cl := range list {
					slug := cl.Slug
					if slug == "" {
						slug = "-"
					}
					fmt.Fprintf(f.IO.Out, "%s slug=%s provider=%s repo=%s last_used=%s\n", cl.LeaseID, slug, dash(cl.Provider), dash(cl.RepoRoot), dash(cl.LastUsedAt))
				}
				for _, p := range problems {
					fmt.Fprintf(f.IO.Out, "problem file=%s code=%s %s\n", p.File, p.Code, p.Message)
				}
			}
			if len(problems) > 0 {
				return exitcode.Silent(exitcode.Usage)
			}
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "Print JSON")
	c.AddCommand(list)
	return c
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
