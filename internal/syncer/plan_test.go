package syncer

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
)

// One scan (Options.Plan) serves several syncs: each workdir gets the
// tree, and no further git call scans the repository.
func TestPrecomputedPlanSyncsSeveralWorkdirs(t *testing.T) {
	ctx := context.Background()
	repo := newRepo(t)
	write(t, repo, "a.txt", "alpha\n")
	write(t, repo, "dir/b.txt", "bravo bravo\n")
	commitAll(t, repo)

	runner := newCounting()
	plan := Scan(ctx, runner, testOptions(repo, ""))
	if err := plan.Err(); err != nil {
		t.Fatal(err)
	}
	if got, want := plan.Files(), []string{"a.txt", "dir/b.txt"}; !slices.Equal(got, want) {
		t.Fatalf("Files = %q, want %q", got, want)
	}
	if n, ok := plan.Size("dir/b.txt"); !ok || n != int64(len("bravo bravo\n")) {
		t.Fatalf("Size(dir/b.txt) = %d, %t", n, ok)
	}
	if _, ok := plan.Size("missing.txt"); ok {
		t.Fatal("Size of a path outside the manifest reported as known")
	}
	gitCalls := runner.count("git")
	if gitCalls == 0 {
		t.Fatal("the scan made no git call: the count below proves nothing")
	}

	root := t.TempDir()
	for _, lease := range []string{"cbx_000000000001", "cbx_000000000002"} {
		workdir := filepath.Join(root, lease, "repo")
		o := testOptions(repo, workdir)
		o.Plan = plan
		if _, err := Sync(ctx, runner, newLocalRemote(t), o, nil); err != nil {
			t.Fatalf("sync to %s: %v", lease, err)
		}
		if got := read(t, filepath.Join(workdir, "dir/b.txt")); got != "bravo bravo\n" {
			t.Fatalf("%s: dir/b.txt = %q", lease, got)
		}
	}
	if n := runner.count("git"); n != gitCalls {
		t.Fatalf("git ran %d more times after the scan; a precomputed plan must not scan again", n-gitCalls)
	}
	// Positive control: without a plan, Sync scans (git runs again).
	o := testOptions(repo, filepath.Join(root, "cbx_000000000003", "repo"))
	if _, err := Sync(ctx, runner, newLocalRemote(t), o, nil); err != nil {
		t.Fatal(err)
	}
	if runner.count("git") == gitCalls {
		t.Fatal("a sync without a plan did not scan")
	}
}
