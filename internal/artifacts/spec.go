// Package artifacts moves a run's files from the workspace to this
// machine: --artifact-glob and --require-artifact matches into the run's
// record dir (with a manifest: path, size, SHA-256), --download files to
// local paths. One remote command lists, confines and bounds the matches
// on the machine and streams them as one tar (remotecmd.ArtifactScript);
// this side trusts none of it: names, sizes, counts and entry types are
// checked again, files are written 0600 in 0700 dirs through an os.Root.
package artifacts

import (
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"unicode"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// MetaDir is the workdir's crabbox metadata directory; nothing in it is
// ever fetched.
const MetaDir = ".crabbox"

// CheckGlob checks an --artifact-glob or --require-artifact pattern: a
// relative, slash-separated pattern below the workdir (globbing with * ?
// [ ] and **), without "..", control characters or the .crabbox dir. It
// returns the cleaned pattern.
func CheckGlob(g string) (string, error) {
	if err := checkRel(g, "pattern"); err != nil {
		return "", err
	}
	return path.Clean(g), nil
}

// checkRel is the shared check of a path or pattern relative to the
// remote workdir.
func checkRel(p, what string) error {
	switch {
	case strings.TrimSpace(p) == "":
		return fmt.Errorf("empty %s", what)
	case strings.IndexFunc(p, unicode.IsControl) >= 0:
		return fmt.Errorf("%s %q holds a control character", what, p)
	case path.IsAbs(p) || strings.HasPrefix(p, "~"):
		return fmt.Errorf("%s %q is absolute; give it relative to the remote workdir", what, p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return fmt.Errorf("%s %q leaves the remote workdir (..)", what, p)
		}
	}
	c := path.Clean(p)
	if c == "." {
		return fmt.Errorf("%s %q names the workdir itself", what, p)
	}
	if c == MetaDir || strings.HasPrefix(c, MetaDir+"/") {
		return fmt.Errorf("%s %q is in crabbox's %s directory", what, p, MetaDir)
	}
	return nil
}

// Download is one --download REMOTE=LOCAL: Remote is a file below the
// remote workdir (clean, relative), Local the local path as given (the
// caller makes it absolute against the working directory).
type Download struct {
	Remote string `json:"remote"`
	Local  string `json:"local"`
}

// Flag is the download as given on the command line.
func (d Download) Flag() string { return "--download " + d.Remote + "=" + d.Local }

// ParseDownload parses REMOTE=LOCAL (split at the first "="; REMOTE is
// relative to the remote workdir, LOCAL to the local working dir unless
// absolute). Errors are usage errors (exit 2).
func ParseDownload(s string) (Download, error) {
	remote, local, ok := strings.Cut(s, "=")
	if !ok {
		return Download{}, exitcode.Errorf(exitcode.Usage, "--download %q: want REMOTE=LOCAL", s)
	}
	if err := checkRel(remote, "remote path"); err != nil {
		return Download{}, exitcode.Errorf(exitcode.Usage, "--download %q: %v", s, err)
	}
	if strings.ContainsAny(remote, "*?[") {
		return Download{}, exitcode.Errorf(exitcode.Usage, "--download %q: REMOTE is one file, not a pattern (use --artifact-glob for patterns)", s)
	}
	switch {
	case local == "" || strings.TrimSpace(local) == "":
		return Download{}, exitcode.Errorf(exitcode.Usage, "--download %q: empty LOCAL path", s)
	case strings.IndexFunc(local, unicode.IsControl) >= 0:
		return Download{}, exitcode.Errorf(exitcode.Usage, "--download %q: LOCAL holds a control character", s)
	case strings.HasSuffix(local, "/") || strings.HasSuffix(local, string(filepath.Separator)) || filepath.Base(filepath.Clean(local)) == "." || filepath.Base(filepath.Clean(local)) == "..":
		return Download{}, exitcode.Errorf(exitcode.Usage, "--download %q: LOCAL must name a file, not a directory", s)
	}
	return Download{Remote: path.Clean(remote), Local: local}, nil
}

// validName reports whether a name the workspace sent is a path this side
// may write below a directory: clean, relative, no "..", not in .crabbox.
func validName(name string) bool {
	if !fs.ValidPath(name) || name == "." || strings.ContainsRune(name, 0) {
		return false
	}
	if runtime.GOOS == "windows" && strings.ContainsAny(name, `\:`) {
		return false
	}
	return name != MetaDir && !strings.HasPrefix(name, MetaDir+"/")
}
