package cli

import (
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/crabbox-dev/crabbox/internal/artifacts"
	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/runner"
)

// runArtifactFlags are run's --artifact-glob, --require-artifact and
// --download.
type runArtifactFlags struct {
	globs, require, downloads []string
}

func addRunArtifactFlags(fl *pflag.FlagSet, a *runArtifactFlags) {
	fl.StringArrayVar(&a.globs, "artifact-glob", nil, "Fetch remote files matching this glob (relative to the remote workdir, ** allowed) into the run record, passed or failed (repeatable)")
	fl.StringArrayVar(&a.require, "require-artifact", nil, "Like --artifact-glob; a command that exits 0 fails (exit 1) when it matches no regular file (repeatable)")
	fl.StringArrayVar(&a.downloads, "download", nil, "After a successful command, write remote file REMOTE (relative to the remote workdir) to LOCAL: REMOTE=LOCAL (repeatable)")
}

func (a *runArtifactFlags) any() bool {
	return len(a.globs)+len(a.require)+len(a.downloads) > 0
}

// artifactSpec checks the flags (usage errors, exit 2) and returns the
// runner's spec, download paths made absolute. The runner checks the
// local files (downloads and captures) for collisions before anything
// runs (runner.CheckLocalOutputs).
func (f *Factory) artifactSpec(cfg *config.Config, a *runArtifactFlags) (runner.ArtifactSpec, error) {
	spec := runner.ArtifactSpec{MaxFiles: cfg.Artifacts.MaxFiles, MaxBytes: cfg.Artifacts.MaxBytes}
	for _, g := range a.globs {
		c, err := artifacts.CheckGlob(g)
		if err != nil {
			return spec, usageErr("--artifact-glob: %v", err)
		}
		spec.Globs = append(spec.Globs, c)
	}
	for _, g := range a.require {
		c, err := artifacts.CheckGlob(g)
		if err != nil {
			return spec, usageErr("--require-artifact: %v", err)
		}
		spec.Require = append(spec.Require, c)
	}
	if len(a.downloads) > 0 {
		cwd, err := f.Getwd()
		if err != nil {
			return spec, usageErr("--download: the working directory: %v", err)
		}
		for _, s := range a.downloads {
			d, err := artifacts.ParseDownload(s)
			if err != nil {
				return spec, err
			}
			if !filepath.IsAbs(d.Local) {
				d.Local = filepath.Join(cwd, d.Local)
			}
			d.Local = filepath.Clean(d.Local)
			spec.Downloads = append(spec.Downloads, d)
		}
	}
	return spec, nil
}
