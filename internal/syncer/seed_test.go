package syncer

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/execx"
)

func TestSeedSource(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	origin := filepath.Join(base, "origin.git")
	repo := filepath.Join(base, "repo")
	if out, err := exec.Command("git", "init", "-q", "--bare", origin).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if out, err := exec.Command("git", "init", "-q", "-b", "main", repo).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	gitIn(t, repo, "-c", "user.email=s@example.com", "-c", "user.name=s", "commit", "-q", "--allow-empty", "-m", "one")
	r := execx.OS{}

	// No origin: nothing to seed, nothing to warn about.
	if u, _, _, why := seedSource(ctx, r, repo); u != "" || why != "" {
		t.Errorf("no origin: %q %q", u, why)
	}
	gitIn(t, repo, "remote", "add", "origin", origin)
	// HEAD not on any origin branch yet.
	if u, _, _, _ := seedSource(ctx, r, repo); u != "" {
		t.Errorf("unpushed HEAD seeded from %q", u)
	}
	gitIn(t, repo, "push", "-q", "origin", "main")
	gitIn(t, repo, "fetch", "-q", "origin")
	u, b, h, why := seedSource(ctx, r, repo)
	if u != origin || b != "main" || len(h) != 40 || why != "" {
		t.Errorf("pushed: %q %q %q %q", u, b, h, why)
	}
	// Credentials in the URL disable seeding, without printing the URL.
	gitIn(t, repo, "remote", "set-url", "origin", "https://bob:s3cret@example.com/r.git")
	u, _, _, why = seedSource(ctx, r, repo)
	if u != "" || why == "" || strings.Contains(why, "s3cret") {
		t.Errorf("credentials: %q %q", u, why)
	}
}

func TestSCPLikeGitHubURLRewrite(t *testing.T) {
	m := scpLikeRe.FindStringSubmatch("git@github.com:o/r.git")
	if m == nil || m[1] != "github.com" || m[2] != "o/r.git" {
		t.Fatalf("match %v", m)
	}
}
