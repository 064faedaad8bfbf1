package syncer

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

// racyClean reports whether git's "unmodified" for a file may be wrong:
// git compares the file's ctime with the one it recorded only to the
// second (nanoseconds need a build option), so an edit that keeps size and
// mtime, made in the same second as the state git recorded, looks clean.
// Such an edit happened at or after the index was last written (an edit
// before it would have been recorded), so a file whose ctime second is not
// before the index file's mtime second is hashed instead. With the index's
// mtime unknown (-1), files changed in the last two seconds are.
func racyClean(ctime, indexMtime int64) bool {
	if ctime == 0 {
		return false // no ctime on this platform: trust git
	}
	if indexMtime < 0 {
		return ctime >= time.Now().Unix()-2
	}
	return ctime >= indexMtime
}

// indexFileMtime is the mtime (Unix seconds) of the repository's index
// file (indexFilePath), or -1 when it cannot be found.
func indexFileMtime(root string) int64 {
	path, ok := indexFilePath(root)
	if !ok {
		return -1
	}
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return fi.ModTime().Unix()
}

// indexFilePath is the repository's index file: $GIT_INDEX_FILE when
// absolute, else <gitdir>/index where the git dir is root/.git or the
// "gitdir:" a .git file names (worktrees, submodules). ok is false when it
// cannot be told (a relative $GIT_INDEX_FILE, no .git).
func indexFilePath(root string) (string, bool) {
	if p := os.Getenv("GIT_INDEX_FILE"); p != "" {
		return p, filepath.IsAbs(p)
	}
	dotgit := filepath.Join(root, ".git")
	fi, err := os.Stat(dotgit)
	switch {
	case err != nil:
		return "", false
	case fi.IsDir():
		return filepath.Join(dotgit, "index"), true
	}
	b, err := os.ReadFile(dotgit)
	if err != nil {
		return "", false
	}
	dir, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir:")
	if !ok {
		return "", false
	}
	dir = strings.TrimSpace(dir)
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	return filepath.Join(dir, "index"), true
}
