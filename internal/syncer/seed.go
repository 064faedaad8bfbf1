package syncer

import (
	"context"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
)

// seedScript clones origin into an empty workdir so the first rsync only
// sends what differs from a commit the workspace can fetch itself
// (sync.gitSeed). $1 workdir, $2 origin URL, $3 branch, $4 HEAD commit, $5
// the sync's generation. A workdir that already is a git checkout only
// gets its origin repaired; a workdir holding anything but crabbox's
// metadata is left alone. The clone is moved into the workdir under the
// sync lock and only while $5 is still the recorded generation (exit 7
// otherwise), so a seed left running by a killed run never fills a tree a
// newer sync owns (see scripts.go). It prints "seeded", "repaired" or
// "skipped"; any failure is reported by the caller as a warning.
const seedScript = `set -u
wd=$1 url=$2 branch=$3 head=$4 gen=${5:-}
command -v git >/dev/null || { echo skipped; exit 0; }
if [ -d "$wd/.git" ]; then
  git -C "$wd" remote set-url origin "$url" 2>/dev/null || git -C "$wd" remote add origin "$url" || exit 3
  echo repaired
  exit 0
fi
for e in "$wd"/* "$wd"/.[!.]* "$wd"/..?*; do
  [ -e "$e" ] || continue
  [ "$e" = "$wd/.crabbox" ] && continue
  echo skipped
  exit 0
done
tmp=$(mktemp -d "$wd/.crabbox/seed.XXXXXX") || exit 3
trap 'rm -rf -- "$tmp"' EXIT
export GIT_TERMINAL_PROMPT=0 GIT_ASKPASS=/bin/false
git clone -q --filter=blob:none --no-checkout --single-branch --branch "$branch" -- "$url" "$tmp/r" || exit 4
git -C "$tmp/r" checkout -q --detach "$head" || exit 5
if command -v flock >/dev/null 2>&1; then
  exec 9>>"$wd/.crabbox/sync/lock" || exit 7
  flock -w 30 9 || exit 7
fi
cur=
IFS= read -r cur < "$wd/.crabbox/sync/generation" || true
if [ -z "$gen" ] || [ "$cur" != "$gen" ]; then
  echo "crabbox sync: not seeding: a newer sync (generation ${cur:-none}) replaced this one ($gen)" >&2
  exit 7
fi
for e in "$tmp/r"/* "$tmp/r"/.[!.]* "$tmp/r"/..?*; do
  [ -e "$e" ] || continue
  mv -- "$e" "$wd"/ || exit 6
done
echo seeded
`

// gitTimeout bounds each local git call of the seed check.
const gitTimeout = 30 * time.Second

var scpLikeRe = regexp.MustCompile(`^git@([A-Za-z0-9.-]+):([^/].*)$`)

// seedSource returns the origin URL, the remote branch that contains HEAD,
// and HEAD, when a git seed is possible: origin exists, carries no
// credentials, and HEAD is on one of its branches. why explains a refusal
// worth a warning ("" when seeding is simply not applicable).
func seedSource(ctx context.Context, r execx.Runner, root string) (originURL, branch, head, why string) {
	git := func(args ...string) string {
		res, err := r.Run(ctx, execx.Cmd{Name: "git", Args: append([]string{"-C", root}, args...), Timeout: gitTimeout})
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(res.Stdout))
	}
	originURL = git("remote", "get-url", "origin")
	head = git("rev-parse", "-q", "--verify", "HEAD^{commit}")
	if originURL == "" || head == "" {
		return "", "", "", ""
	}
	if m := scpLikeRe.FindStringSubmatch(originURL); m != nil && m[1] == "github.com" {
		originURL = "https://github.com/" + strings.TrimSuffix(m[2], ".git") + ".git"
	}
	if u, err := url.Parse(originURL); err == nil && u.User != nil && u.Scheme != "ssh" {
		// The URL is not printed: it holds credentials.
		return "", "", "", "origin carries credentials; git seed disabled"
	}
	for _, b := range strings.Split(git("branch", "-r", "--contains", head, "--format=%(refname:short)"), "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(b), "origin/"); ok && name != "HEAD" && name != "" {
			return originURL, name, head, ""
		}
	}
	return "", "", "", ""
}
