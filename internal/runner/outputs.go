package runner

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// LocalOutput is one local file a run writes, with the flag that named it.
type LocalOutput struct {
	Flag string // e.g. "--capture-stdout"
	Path string // absolute (the command resolved it against its working directory)
	// MakeDirs: the run makes the file's missing parent directories
	// (0700), so they need not exist yet (--download).
	MakeDirs bool
}

// LocalOutputPaths lists every local file s asks the run to write: the
// stdout and stderr captures and the downloads (and any other flag that
// writes a local file: add it here, so CheckLocalOutputs sees it).
func LocalOutputPaths(s Spec) []LocalOutput {
	var outs []LocalOutput
	if s.CaptureStdout != "" {
		outs = append(outs, LocalOutput{Flag: "--capture-stdout", Path: s.CaptureStdout})
	}
	if s.CaptureStderr != "" {
		outs = append(outs, LocalOutput{Flag: "--capture-stderr", Path: s.CaptureStderr})
	}
	for _, d := range s.Artifacts.Downloads {
		outs = append(outs, LocalOutput{Flag: "--download " + d.Remote, Path: d.Local, MakeDirs: true})
	}
	return outs
}

// CheckLocalOutputs refuses (exit 2), before anything runs, outputs that
// would name the same local file (the same path after cleaning and
// resolving its directory's symlinks, or one existing file under two
// names), one that would need another's file as its directory, an output
// that is a directory, and one whose directory does not exist (unless the
// run makes it: MakeDirs).
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
		if err != nil && o.MakeDirs {
			rdir, err = resolveExisting(dir)
		}
		if err != nil {
			return exitcode.Errorf(exitcode.Usage, "%s %s: its directory does not exist (%v)", o.Flag, o.Path, err)
		}
		cur := seen{LocalOutput: o, key: filepath.Join(rdir, base)}
		if fi, err := os.Stat(p); err == nil {
			if fi.IsDir() {
				return exitcode.Errorf(exitcode.Usage, "%s %s: is a directory", o.Flag, o.Path)
			}
			cur.fi = fi
		}
		for _, q := range prev {
			switch {
			case q.key == cur.key || (q.fi != nil && cur.fi != nil && os.SameFile(q.fi, cur.fi)):
				return exitcode.Errorf(exitcode.Usage, "%s %s and %s %s name the same local file; give each its own", q.Flag, q.Path, o.Flag, o.Path)
			case strings.HasPrefix(cur.key, q.key+string(filepath.Separator)):
				return exitcode.Errorf(exitcode.Usage, "%s writes %s, which %s needs as a directory; give each its own", q.Flag, q.Path, o.Flag)
			case strings.HasPrefix(q.key, cur.key+string(filepath.Separator)):
				return exitcode.Errorf(exitcode.Usage, "%s writes %s, which %s needs as a directory; give each its own", o.Flag, o.Path, q.Flag)
			}
		}
		prev = append(prev, cur)
	}
	return nil
}

// resolveExisting is dir with the symlinks of its longest existing
// ancestor resolved; that ancestor must be a directory.
func resolveExisting(dir string) (string, error) {
	dir = filepath.Clean(dir)
	rest := ""
	for d := dir; ; {
		if real, err := filepath.EvalSymlinks(d); err == nil {
			if st, err := os.Stat(real); err != nil || !st.IsDir() {
				return "", fmt.Errorf("%s is not a directory", d)
			}
			return filepath.Join(real, rest), nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", &os.PathError{Op: "stat", Path: dir, Err: os.ErrNotExist}
		}
		rest = filepath.Join(filepath.Base(d), rest)
		d = parent
	}
}
