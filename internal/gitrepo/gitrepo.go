// Package gitrepo answers two questions about a repository from its own
// files, without running git: where its top level is, and origin's URL.
// It answers only when the files leave no doubt about what git itself
// would say; for anything else (a worktree or submodule's .git file, an
// include, a variable that moves the repository, a value it does not
// take apart) it says so, and the caller asks git.
package gitrepo

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// discoveryEnv are variables that change where git finds the repository,
// its work tree or its configuration.
var discoveryEnv = []string{
	"GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_CEILING_DIRECTORIES",
	"GIT_DISCOVERY_ACROSS_FILESYSTEM", "GIT_CONFIG", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT",
}

func envMovesRepo() bool {
	for _, v := range discoveryEnv {
		if _, set := os.LookupEnv(v); set {
			return true
		}
	}
	return false
}

// Toplevel is what `git rev-parse --show-toplevel --show-prefix` prints
// when run in dir: the physical path of the work tree's top level, and
// dir's path below it ("" at the top, else "a/b", no trailing slash). ok
// is false when git must be asked: outside a repository, in a worktree
// or submodule (.git is a file), inside a git directory, across a
// filesystem boundary, in a repository someone else owns (git's
// safe.directory check), or with a config that sets core.worktree or
// core.bare or includes other files.
func Toplevel(dir string) (root, prefix string, ok bool) {
	if envMovesRepo() {
		return "", "", false
	}
	phys, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", "", false
	}
	if phys, err = filepath.Abs(phys); err != nil {
		return "", "", false
	}
	dev0, _, ok := devOwner(phys)
	if !ok {
		return "", "", false
	}
	for d := phys; ; {
		dev, owner, ok := devOwner(d)
		if !ok || dev != dev0 {
			return "", "", false
		}
		fi, err := os.Lstat(filepath.Join(d, ".git"))
		switch {
		case err == nil && fi.IsDir():
			return checkRepo(d, phys, owner)
		case err == nil, !errors.Is(err, fs.ErrNotExist):
			return "", "", false // a .git file or symlink, or unreadable
		case isGitDir(d):
			return "", "", false // a bare repository, or inside a git dir
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", "", false // not in a repository: git says why
		}
		d = parent
	}
}

func checkRepo(top, dir string, topOwner int) (root, prefix string, ok bool) {
	gitDir := filepath.Join(top, ".git")
	if !isGitDir(gitDir) {
		return "", "", false
	}
	if _, owner, ok := devOwner(gitDir); !ok || owner != topOwner || !ownedByMe(owner) {
		return "", "", false
	}
	entries, ok := readConfig(filepath.Join(gitDir, "config"))
	if !ok {
		return "", "", false
	}
	for _, e := range entries {
		switch {
		case e.section == "core" && e.sub == "" && e.key == "worktree",
			e.section == "core" && e.sub == "" && e.key == "bare" && !isFalse(e.value),
			e.section == "extensions" && e.key == "worktreeconfig":
			return "", "", false
		}
	}
	rel, err := filepath.Rel(top, dir)
	if err != nil {
		return "", "", false
	}
	rel = filepath.ToSlash(rel)
	if rel == "." {
		rel = ""
	}
	for _, seg := range strings.Split(rel, "/") {
		if seg == ".git" {
			return "", "", false // inside the git directory
		}
	}
	return top, rel, true
}

// isGitDir is git's own test of a git directory: HEAD, objects/ and refs/.
func isGitDir(d string) bool {
	head, err := os.Lstat(filepath.Join(d, "HEAD"))
	if err != nil || !head.Mode().IsRegular() {
		return false
	}
	for _, sub := range []string{"objects", "refs"} {
		if fi, err := os.Stat(filepath.Join(d, sub)); err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

func isFalse(v string) bool {
	switch strings.ToLower(v) {
	case "false", "no", "off", "0", "":
		return true
	}
	return false
}

// OriginURL is what `git config --get remote.origin.url` prints in the
// repository whose top level is root: the last value set, "" when none
// is. It reads the repository's config, then the user's global files
// ($GIT_CONFIG_GLOBAL, else $XDG_CONFIG_HOME/git/config and ~/.gitconfig)
// and the system's (/etc/gitconfig, or $GIT_CONFIG_SYSTEM, unless
// $GIT_CONFIG_NOSYSTEM). ok is false when git must be asked: a file
// includes another, or holds a value this reader does not take apart.
func OriginURL(root string) (url string, ok bool) {
	if envMovesRepo() {
		return "", false
	}
	gitDir := filepath.Join(root, ".git")
	if fi, err := os.Lstat(gitDir); err != nil || !fi.IsDir() {
		return "", false
	}
	// Later files win, as in git: system, global, then the repository's.
	for _, f := range append(append(systemConfig(), globalConfig()...), filepath.Join(gitDir, "config")) {
		if f == "" {
			return "", false
		}
		entries, ok := readConfig(f)
		if !ok {
			return "", false
		}
		for _, e := range entries {
			if e.section == "remote" && e.sub == "origin" && e.key == "url" {
				url = e.value
			}
		}
	}
	return url, true
}

func systemConfig() []string {
	if v, set := os.LookupEnv("GIT_CONFIG_NOSYSTEM"); set && !isFalse(v) {
		return nil
	}
	if p, set := os.LookupEnv("GIT_CONFIG_SYSTEM"); set {
		return []string{p}
	}
	return []string{"/etc/gitconfig"}
}

// globalConfig is the user's config files, in the order git reads them;
// "" when they cannot be told.
func globalConfig() []string {
	if p, set := os.LookupEnv("GIT_CONFIG_GLOBAL"); set {
		return []string{p}
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return []string{""}
	}
	xdg := os.Getenv("XDG_CONFIG_HOME")
	if xdg == "" {
		xdg = filepath.Join(home, ".config")
	}
	return []string{filepath.Join(xdg, "git", "config"), filepath.Join(home, ".gitconfig")}
}
