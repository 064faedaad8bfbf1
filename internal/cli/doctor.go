package cli

import (
	"context"
	"fmt"
	"os/exec"
	"time"

	"github.com/spf13/cobra"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// doctorTimeout bounds the provider checks (about 10 s is the aim; the lab's first
// call after start can take longer, so a little more).
const doctorTimeout = 20 * time.Second

type doctorCheck struct {
	Status   string            `json:"status"`
	Check    string            `json:"check"`
	Provider string            `json:"provider,omitempty"`
	Message  string            `json:"message,omitempty"`
	Details  map[string]string `json:"details,omitempty"`
}

type doctorOutput struct {
	OK       bool          `json:"ok"`
	Provider string        `json:"provider"`
	Summary  string        `json:"summary"`
	Checks   []doctorCheck `json:"checks"`
}

func newDoctorCmd(f *Factory) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the local tools and the Coder CLI's login without changing anything",
		Long: `Check that git, ssh and rsync are installed and that the Coder CLI works and
is logged in. Only 'coder version', 'coder whoami -o json' and
'coder list -o json' are run: nothing is created, started, stopped or deleted.

One line per check, then a summary line such as
  provider=coder cli=ready auth=missing_login inventory=unchecked mutation=false

EXIT STATUS
  0  every check passed
  1  a check failed
  2  usage or configuration error`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			lc, err := f.openLeaseOpt(cmd, providerAssumed, "")
			if err != nil {
				return err
			}
			defer lc.close()
			out := doctorOutput{OK: true, Provider: lc.provider.Name(), Checks: []doctorCheck{}}
			for _, tool := range []string{"git", "ssh", "rsync"} {
				c := doctorCheck{Check: tool}
				if p, err := exec.LookPath(tool); err != nil {
					c.Status, c.Message = "missing", tool+" not found on PATH; install it (Debian: apt-get install "+debPkg(tool)+")"
					out.OK = false
				} else {
					c.Status, c.Message = "ok", p
				}
				out.Checks = append(out.Checks, c)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), doctorTimeout)
			defer cancel()
			rep := lc.provider.Doctor(ctx)
			for _, c := range rep.Checks {
				out.Checks = append(out.Checks, doctorCheck{Status: c.Status, Check: c.Name, Provider: lc.provider.Name(), Message: c.Message, Details: c.Details})
			}
			out.OK = out.OK && rep.OK
			out.Summary = rep.Summary
			if asJSON {
				if err := writeJSON(f.IO.Out, out); err != nil {
					return err
				}
			} else {
				for _, c := range out.Checks {
					fmt.Fprintf(f.IO.Out, "%-7s %-9s %s\n", c.Status, c.Check, c.Message)
				}
				fmt.Fprintln(f.IO.Out, out.Summary)
			}
			if !out.OK {
				return exitcode.Silent(exitcode.Failure)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "Print JSON")
	addConfigFlags(cmd)
	return cmd
}

func debPkg(tool string) string {
	if tool == "ssh" {
		return "openssh-client"
	}
	return tool
}
