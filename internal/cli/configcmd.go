package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/runs"
	"github.com/crabbox-dev/crabbox/internal/trust"
)

// addConfigFlags registers the configuration flags (--provider, --coder-*,
// --idle-timeout, run's --checksum, --junit, ...) cmd takes. Only flags the
// user sets reach the config. A command that declares a flag of the same
// name itself is a programming error (its value would never reach the
// config): it panics, and the CLI's tests build every command.
func addConfigFlags(cmd *cobra.Command) {
	all := cmd.Name() == "show" // config show takes every flag, to show its effect
	for _, fs := range config.FlagNames() {
		if !all && len(fs.On) > 0 && !slices.Contains(fs.On, cmd.Name()) {
			continue
		}
		if cmd.Flags().Lookup(fs.Name) != nil {
			panic(fmt.Sprintf("crabbox %s declares --%s, which is the config flag of %s", cmd.Name(), fs.Name, fs.Key))
		}
		switch fs.Kind {
		case "bool":
			cmd.Flags().Bool(fs.Name, false, fs.Usage)
		case "list":
			cmd.Flags().StringArray(fs.Name, nil, fs.Usage+" (repeatable, comma-separated)")
		default:
			cmd.Flags().String(fs.Name, "", fs.Usage)
		}
	}
}

// loadConfig loads the layered configuration with cmd's explicitly set flags.
func (f *Factory) loadConfig(cmd *cobra.Command) (*config.Config, error) {
	flags := map[string]string{}
	for _, fs := range config.FlagNames() {
		fl := cmd.Flags().Lookup(fs.Name)
		switch {
		case fl == nil || !fl.Changed:
		case fs.Kind == "list":
			flags[fs.Name] = strings.Join(fl.Value.(pflag.SliceValue).GetSlice(), ",")
		default:
			flags[fs.Name] = fl.Value.String()
		}
	}
	cfg, err := config.Load(config.LoadOptions{Env: f.Env, RepoRoot: f.repoRoot(cmd.Context()), Flags: flags,
		Trusted: trust.New(config.StateDir(f.Env)).Trusted})
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(f.IO.ErrOut, "warning: %s\n", w)
	}
	return cfg, nil
}

func newConfigCmd(f *Factory) *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Show where configuration lives and what is in effect",
	}
	c.AddCommand(&cobra.Command{
		Use:   "path",
		Short: "Print the user config file path",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(f.IO.Out, config.UserConfigPath(f.Env))
			return nil
		},
	})
	var asJSON bool
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration and the layer each value came from",
		Long: `Print every configuration key with its effective value and the layer it
came from: default < user < repo < env < flag.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.loadConfig(cmd)
			if err != nil {
				return err
			}
			settings := cfg.Settings()
			if asJSON {
				type setting struct {
					Key    string `json:"key"`
					Value  string `json:"value"`
					Source string `json:"source"`
					File   string `json:"file,omitempty"`
				}
				type ignored struct {
					Key    string `json:"key"`
					Value  string `json:"value"`
					File   string `json:"file"`
					Reason string `json:"reason"`
				}
				out := struct {
					UserConfig       string    `json:"userConfig"`
					ProviderSelected bool      `json:"providerSelected"`
					ProviderSource   string    `json:"providerSource"`
					Settings         []setting `json:"settings"`
					Ignored          []ignored `json:"ignored"`
				}{UserConfig: config.UserConfigPath(f.Env), ProviderSelected: cfg.Provider != "", ProviderSource: cfg.Source("provider"), Settings: []setting{}, Ignored: []ignored{}}
				for _, s := range settings {
					out.Settings = append(out.Settings, setting{s.Key, s.Value, s.Source, s.File})
				}
				for _, ig := range cfg.Ignored {
					out.Ignored = append(out.Ignored, ignored{ig.Key, ig.Value, ig.File, "untrusted repo config; run " + config.TrustCommand})
				}
				enc := json.NewEncoder(f.IO.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			tw := tabwriter.NewWriter(f.IO.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "KEY\tVALUE\tSOURCE\n")
			for _, s := range settings {
				v := s.Value
				if v == "" {
					v = "-"
				}
				src := s.Source
				if s.File != "" {
					src += " (" + s.File + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Key, v, src)
			}
			for _, ig := range cfg.Ignored {
				fmt.Fprintf(tw, "%s\t%s\tignored: repo (%s) is not trusted; run %s\n", ig.Key, runs.Escape(ig.Value), ig.File, config.TrustCommand)
			}
			return tw.Flush()
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, "Print JSON")
	addConfigFlags(show)
	c.AddCommand(show)
	c.AddCommand(newConfigTrustCmd(f))
	return c
}

func newConfigTrustCmd(f *Factory) *cobra.Command {
	var revoke bool
	cmd := &cobra.Command{
		Use:   "trust",
		Short: "Trust this repository's crabbox.yaml/.crabbox.yaml as they are now",
		Long: `A repository's config file is written by whoever wrote the checkout. Keys
that choose what runs on this machine, what leaves it or what gets destroyed
(coder.cliPath, coder.workRoot, workRoot, coder.richParameterFile,
coder.deleteOnRelease, env.allow) are ignored from a repo config file until you
trust that file's exact content with this command. Editing the file makes it
untrusted again. User config, environment and flags always apply.

CRABBOX_TRUST_REPO_CONFIG=1 trusts every repo config file (for CI that already
trusts its checkout).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			root := f.repoRoot(cmd.Context())
			if root == "" {
				return usageErr("not in a git repository: there is no repo config file to trust")
			}
			store := trust.New(config.StateDir(f.Env))
			found := false
			for _, name := range config.RepoConfigFiles {
				p := filepath.Join(root, name)
				data, err := os.ReadFile(p)
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					return fmt.Errorf("reading %s: %w", p, err)
				}
				found = true
				if revoke {
					ok, err := store.Revoke(p)
					if err != nil {
						return err
					}
					if ok {
						fmt.Fprintf(f.IO.Out, "untrusted %s\n", p)
					} else {
						fmt.Fprintf(f.IO.Out, "%s was not trusted\n", p)
					}
					continue
				}
				e, err := store.Trust(p, data, f.Now())
				if err != nil {
					return err
				}
				fmt.Fprintf(f.IO.Out, "trusted %s sha256=%s\n", e.Path, e.SHA256)
			}
			if !found {
				return usageErr("no %s in %s: nothing to trust", strings.Join(config.RepoConfigFiles, " or "), root)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&revoke, "revoke", false, "Forget the trust of this repository's config files")
	return cmd
}
