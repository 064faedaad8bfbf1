package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/crabbox-dev/crabbox/internal/config"
)

// addConfigFlags registers every configuration flag (--provider, --coder-*,
// --idle-timeout, ...) on cmd. Only flags the user sets reach the config.
func addConfigFlags(cmd *cobra.Command) {
	for _, fs := range config.FlagNames() {
		if cmd.Flags().Lookup(fs.Name) != nil {
			continue
		}
		if fs.Kind == "bool" {
			cmd.Flags().Bool(fs.Name, false, fs.Usage)
		} else {
			cmd.Flags().String(fs.Name, "", fs.Usage)
		}
	}
}

// loadConfig loads the layered configuration with cmd's explicitly set flags.
func (f *Factory) loadConfig(cmd *cobra.Command) (*config.Config, error) {
	flags := map[string]string{}
	for _, fs := range config.FlagNames() {
		if fl := cmd.Flags().Lookup(fs.Name); fl != nil && fl.Changed {
			flags[fs.Name] = fl.Value.String()
		}
	}
	cfg, err := config.Load(config.LoadOptions{Env: f.Env, RepoRoot: f.repoRoot(cmd.Context()), Flags: flags})
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
				out := struct {
					UserConfig       string    `json:"userConfig"`
					ProviderSelected bool      `json:"providerSelected"`
					ProviderSource   string    `json:"providerSource"`
					Settings         []setting `json:"settings"`
				}{UserConfig: config.UserConfigPath(f.Env), ProviderSelected: cfg.Provider != "", ProviderSource: cfg.Source("provider"), Settings: []setting{}}
				for _, s := range settings {
					out.Settings = append(out.Settings, setting{s.Key, s.Value, s.Source, s.File})
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
			return tw.Flush()
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, "Print JSON")
	addConfigFlags(show)
	c.AddCommand(show)
	return c
}
