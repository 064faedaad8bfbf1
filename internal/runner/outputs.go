package runner

import (
	"os"
	"path/filepath"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// LocalOutput is one local file a run writes, with the flag that named it.
type LocalOutput struct {
	Flag string // e.g. "--capture-stdout"
	Path string // absolute (the command resolved it against its working directory)
}

// LocalOutputPaths lists every local file s asks the run to write: the
// stdout and stderr captures (and any other flag that writes a local
// file: add it here, so CheckLocalOutputs sees it).
func LocalOutputPaths(s Spec) []LocalOutput {
	var outs []LocalOutput
	if s.CaptureStdout != "" {
		outs = append(outs, LocalOutput{Flag: "--capture-stdout", Path: s.CaptureStdout})
	}
	if s.CaptureStderr != "" {
		outs = append(outs, LocalOutput{Flag: "--capture-stderr", Path: s.CaptureStderr})
	}
	return outs
}

// CheckLocalOutputs refuses (exit 2), before anything runs, outputs that
// would name the same local file (the same path after cleaning and
// resolving its directory's symlinks, or one existing file under two
// names), an output that is a directory, and one whose directory does not
// exist.
func CheckLocalOutputs(outs []LocalOutput) error {
	type seen struct {
		LocalOutput
		key string
		fi  os.FileInfo
	}
	var prev []seen
	for _, o := range outs {
		if o.Path == "" {
			return exitcode.Errorf(exitcode.Usage, "%s: empty path", o.Flag)
		}
		p, err := filepath.Abs(o.Path)
		if err != nil {
			return exitcode.Errorf(exitcode.Usage, "%s %s: %v", o.Flag, o.Path, err)
		}
		dir, base := filepath.Split(p)
		rdir, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return exitcode.Errorf(exitcode.Usage, "%s %s: its directory does not exist (%v)", o.Flag, o.Path, err)
		}
		if st, err := os.Stat(rdir); err != nil || !st.IsDir() {
			return exitcode.Errorf(exitcode.Usage, "%s %s: %s is not a directory", o.Flag, o.Path, dir)
		}
		cur := seen{LocalOutput: o, key: filepath.Join(rdir, base)}
		if fi, err := os.Stat(p); err == nil {
			if fi.IsDir() {
				return exitcode.Errorf(exitcode.Usage, "%s %s: is a directory", o.Flag, o.Path)
			}
			cur.fi = fi
		}
		for _, q := range prev {
			if q.key == cur.key || (q.fi != nil && cur.fi != nil && os.SameFile(q.fi, cur.fi)) {
				return exitcode.Errorf(exitcode.Usage, "%s %s and %s %s name the same local file; give each its own", q.Flag, q.Path, o.Flag, o.Path)
			}
		}
		prev = append(prev, cur)
	}
	return nil
}
