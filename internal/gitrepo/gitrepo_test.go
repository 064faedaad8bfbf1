package gitrepo

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// isolate keeps the developer's and the system's git config out of a test
// and gives it a global config file of its own.
func isolate(t *testing.T) (global string) {
	t.Helper()
	home := t.TempDir()
	global = filepath.Join(home, "gitconfig")
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "xdg"))
	t.Setenv("GIT_CONFIG_GLOBAL", global)
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	for _, v := range discoveryEnv {
		if _, set := os.LookupEnv(v); set {
			t.Setenv(v, "")
			os.Unsetenv(v)
		}
	}
	return global
}

func git(t *testing.T, dir string, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	return string(out), err == nil
}

func mustGit(t *testing.T, dir string, args ...string) {
	t.Helper()
	if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// gitToplevel is what crabbox asks git when Toplevel defers.
func gitToplevel(t *testing.T, dir string) (root, prefix string, ok bool) {
	out, ok := git(t, dir, "rev-parse", "--show-toplevel", "--show-prefix")
	if !ok {
		return "", "", false
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	root = lines[0]
	if len(lines) > 1 {
		prefix = strings.TrimSuffix(lines[1], "/")
	}
	return root, prefix, true
}

func appendFile(t *testing.T, name, text string) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// TestToplevelAgreesWithGit: wherever Toplevel answers, git says the same;
// in a plain repository it does answer (the positive control), and in
// the set-ups whose answer depends on more than these files it defers.
func TestToplevelAgreesWithGit(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(t *testing.T, base string) (cwd string)
		answered bool
	}{
		{"top", func(t *testing.T, base string) string { return repo(t, base) }, true},
		{"subdir", func(t *testing.T, base string) string {
			r := repo(t, base)
			d := filepath.Join(r, "a", "b c")
			os.MkdirAll(d, 0o755)
			return d
		}, true},
		{"through a symlink", func(t *testing.T, base string) string {
			r := repo(t, base)
			os.MkdirAll(filepath.Join(r, "sub"), 0o755)
			link := filepath.Join(base, "link")
			if err := os.Symlink(r, link); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(link, "sub")
		}, true},
		{"core.bare false written by init", func(t *testing.T, base string) string {
			r := repo(t, base)
			mustGit(t, r, "config", "core.bare", "false")
			return r
		}, true},
		{"core.worktree", func(t *testing.T, base string) string {
			r := repo(t, base)
			other := filepath.Join(base, "wt")
			os.MkdirAll(other, 0o755)
			mustGit(t, r, "config", "core.worktree", other)
			return r
		}, false},
		{"include", func(t *testing.T, base string) string {
			r := repo(t, base)
			mustGit(t, r, "config", "include.path", filepath.Join(base, "inc"))
			return r
		}, false},
		{"worktree", func(t *testing.T, base string) string {
			r := repo(t, base)
			mustGit(t, r, "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "x")
			wt := filepath.Join(base, "linked")
			mustGit(t, r, "worktree", "add", "-q", wt)
			return wt
		}, false},
		{"inside .git", func(t *testing.T, base string) string {
			return filepath.Join(repo(t, base), ".git", "objects")
		}, false},
		{"bare", func(t *testing.T, base string) string {
			b := filepath.Join(base, "bare.git")
			mustGit(t, base, "init", "-q", "--bare", b)
			return b
		}, false},
		{"no repository", func(t *testing.T, base string) string { return base }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			isolate(t)
			base := t.TempDir()
			cwd := tc.setup(t, base)
			root, prefix, ok := Toplevel(cwd)
			if ok != tc.answered {
				t.Fatalf("Toplevel(%s) answered=%v, want %v (root %q)", cwd, ok, tc.answered, root)
			}
			if !ok {
				return
			}
			groot, gprefix, gok := gitToplevel(t, cwd)
			if !gok || root != groot || prefix != gprefix {
				t.Errorf("Toplevel = %q, %q; git says %q, %q (ok %v)", root, prefix, groot, gprefix, gok)
			}
		})
	}
}

func TestToplevelDefersToGitWhenTheEnvironmentMovesTheRepo(t *testing.T) {
	isolate(t)
	r := repo(t, t.TempDir())
	if _, _, ok := Toplevel(r); !ok {
		t.Fatal("no answer in a plain repository")
	}
	for _, v := range []string{"GIT_DIR", "GIT_WORK_TREE", "GIT_CEILING_DIRECTORIES", "GIT_CONFIG_PARAMETERS"} {
		t.Run(v, func(t *testing.T) {
			t.Setenv(v, filepath.Join(r, ".git"))
			if root, _, ok := Toplevel(r); ok {
				t.Errorf("with $%s set Toplevel answered %q", v, root)
			}
		})
	}
}

func repo(t *testing.T, base string) string {
	t.Helper()
	r := filepath.Join(base, "repo")
	mustGit(t, base, "init", "-q", r)
	return r
}

// TestOriginURLAgreesWithGit: wherever OriginURL answers, `git config
// --get remote.origin.url` prints the same.
func TestOriginURLAgreesWithGit(t *testing.T) {
	tests := []struct {
		name     string
		local    string // appended to .git/config
		global   string
		answered bool
	}{
		{"none", "", "", true},
		{"ssh url", "[remote \"origin\"]\n\turl = git@github.com:o/r.git\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n", "", true},
		{"https, last wins", "[remote \"origin\"]\n\turl = https://a/x.git\n[remote \"origin\"]\n  URL=https://b/y\n", "", true},
		{"older section form", "[remote.origin]\nurl = https://c/z.git\n", "", true},
		{"other remote only", "[remote \"upstream\"]\n\turl = https://a/up.git\n", "", true},
		{"subsection is case-sensitive", "[remote \"Origin\"]\n\turl = https://a/cap.git\n", "", true},
		{"from the global file", "", "[remote \"origin\"]\n\turl = https://g/glob.git\n", true},
		{"local beats global", "[remote \"origin\"]\n\turl = https://l/loc.git\n", "[remote \"origin\"]\n\turl = https://g/glob.git\n", true},
		{"comments and blank lines", "# c\n; d\n\n[remote \"origin\"]\n# url = https://no\n\turl = https://e/f\n", "", true},
		{"quoted value", "[remote \"origin\"]\n\turl = \"https://q/quoted\"\n", "", false},
		{"inline comment", "[remote \"origin\"]\n\turl = https://i/c # note\n", "", false},
		{"continuation", "[remote \"origin\"]\n\turl = https://x/\\\ny\n", "", false},
		{"include in global", "", "[include]\n\tpath = /nonexistent\n", false},
		{"key on the section line", "[remote \"origin\"] url = https://k/v\n", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			global := isolate(t)
			r := repo(t, t.TempDir())
			appendFile(t, filepath.Join(r, ".git", "config"), tc.local)
			if tc.global != "" {
				appendFile(t, global, tc.global)
			}
			url, ok := OriginURL(r)
			if ok != tc.answered {
				t.Fatalf("OriginURL answered=%v (%q), want %v", ok, url, tc.answered)
			}
			if !ok {
				return
			}
			out, _ := git(t, r, "config", "--get", "remote.origin.url")
			if want := strings.TrimSuffix(out, "\n"); url != want {
				t.Errorf("OriginURL = %q, git says %q", url, want)
			}
		})
	}
}
