package syncer

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/crabbox-dev/crabbox/internal/execx"
)

// statusConfig is gitStatConfig plus what `git status` alone reads: no
// untracked cache (its directory-mtime shortcut is trusted by nothing
// here) and the executable bit always compared, so a `chmod +x` is a
// modification whatever the repository's core.fileMode says.
var statusConfig = append(append([]string{}, gitStatConfig...),
	"-c", "core.untrackedCache=false",
	"-c", "core.fileMode=true",
)

// statusArgs is the one git command of the fast scan. --no-optional-locks:
// git refreshes stat data in memory only and never rewrites the index (a
// rewrite would move the index's mtime, which racyClean compares against).
// Submodules are never synced, so git does not look into them.
func statusArgs(root string, others bool) []string {
	args := append([]string{"--no-optional-locks", "-C", root}, statusConfig...)
	untracked := "--untracked-files=no"
	if others {
		untracked = "--untracked-files=all"
	}
	return append(args, "status", "--porcelain=v2", "-z", "--branch", "--no-ahead-behind",
		"--no-renames", "--ignore-submodules=all", untracked)
}

// gitEnvOverrides are variables that move the repository away from
// RepoRoot/.git; with any set, the fast scan cannot tell which index git
// reads.
var gitEnvOverrides = []string{"GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR"}

// fastSnapshot builds the snapshot from ONE `git status` (HEAD, and the
// paths whose worktree differs from the index, unmerged or untracked) and
// git's index file read directly (every entry's mode, object id and the
// stat data git recorded), instead of listing every entry through git. An
// entry git does not report, whose flags let git look at the file (not
// assume-unchanged, skip-worktree or intent-to-add), is clean as of this
// scan: its blob id, mode and recorded size stand for the file, with no
// lstat of it. The index is read between two stats that must agree, so
// git and this reader saw the same index. errIndexUnsupported (wrapped)
// asks for the ls-files scan instead.
func fastSnapshot(ctx context.Context, r execx.Runner, root string, others bool) (*snapshot, error) {
	for _, v := range gitEnvOverrides {
		if os.Getenv(v) != "" {
			return nil, fmt.Errorf("%w: $%s is set", errIndexUnsupported, v)
		}
	}
	ipath, ok := indexFilePath(root)
	if !ok {
		return nil, fmt.Errorf("%w: index file not found", errIndexUnsupported)
	}
	for attempt := 0; ; attempt++ {
		s, err := fastSnapshotOnce(ctx, r, root, ipath, others)
		if !errors.Is(err, errIndexChanged) {
			return s, err
		}
		if attempt == 2 {
			return nil, fmt.Errorf("%w: the index kept changing during the scan", errIndexUnsupported)
		}
	}
}

var errIndexChanged = errors.New("the index changed during the scan")

func fastSnapshotOnce(ctx context.Context, r execx.Runner, root, ipath string, others bool) (*snapshot, error) {
	stamp := func() (string, int64, error) {
		fi, err := os.Stat(ipath)
		if errors.Is(err, fs.ErrNotExist) {
			return "none", -1, nil
		}
		if err != nil {
			return "", 0, err
		}
		return stampOf(fi), fi.ModTime().Unix(), nil
	}
	before, indexMtime, err := stamp()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errIndexUnsupported, err)
	}
	var data []byte
	if before != "none" {
		if data, err = os.ReadFile(ipath); err != nil {
			return nil, fmt.Errorf("%w: %v", errIndexUnsupported, err)
		}
	}
	// The index is taken apart while git status runs (SHA-1 ids assumed:
	// taken apart again below if HEAD says otherwise).
	var (
		parsed    []*indexEntry
		parsedErr error
		parseDone = make(chan struct{})
	)
	go func() {
		defer close(parseDone)
		if data != nil {
			parsed, parsedErr = readIndexEntries(data, 20)
		}
	}()
	res, err := r.Run(ctx, execx.Cmd{Name: "git", Args: statusArgs(root, others)})
	<-parseDone
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// The ls-files scan fails with git's own message, or copes.
		return nil, fmt.Errorf("%w: git status: %v", errIndexUnsupported, err)
	}
	after, _, err := stamp()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errIndexUnsupported, err)
	}
	if after != before {
		return nil, errIndexChanged
	}
	st, err := parseStatus(res.Stdout)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errIndexUnsupported, err)
	}
	s := &snapshot{head: st.head, untracked: st.untracked, indexMtime: indexMtime, fast: true}
	if data == nil {
		s.order = []*indexEntry{}
		return s, nil
	}
	hashLen, ok := indexHashLen(st.head, data)
	if !ok {
		return nil, fmt.Errorf("%w: object format unknown", errIndexUnsupported)
	}
	if hashLen != 20 {
		parsed, parsedErr = readIndexEntries(data, hashLen)
	}
	if parsedErr != nil {
		if errors.Is(parsedErr, errIndexUnsupported) {
			return nil, parsedErr
		}
		return nil, fmt.Errorf("%w: %v", errIndexUnsupported, parsedErr)
	}
	s.order = parsed
	for _, e := range s.order {
		switch {
		case e.unmerged:
			e.dirty = true
		case st.dirty[e.path] || e.unwatched:
			// git reported it, or never looks at the file (a hostile
			// checkout's `update-index --assume-unchanged` would hide an
			// edit): the file is looked at and hashed.
			e.dirty = true
		case e.mode == 0o100644 || e.mode == 0o100755 || e.mode == 0o120000:
			// A recorded size of 0 may be git's racy-entry smudge rather
			// than the file's: such an entry is lstat'ed for its size.
			e.clean = e.size > 0 || e.mode == 0o120000
		}
	}
	return s, nil
}

// readIndexEntries takes the index file apart (parseIndex) into one entry
// per path, in the index's order, with what git recorded; an unmerged path
// (stages 1-3) is one entry marked unmerged, with the first stage's mode.
func readIndexEntries(data []byte, hashLen int) ([]*indexEntry, error) {
	recs, err := parseIndex(data, hashLen)
	if err != nil {
		return nil, err
	}
	ents := make([]indexEntry, 0, len(recs))
	order := make([]*indexEntry, 0, len(recs))
	for i := range recs {
		rec := &recs[i]
		if n := len(ents); n > 0 && ents[n-1].path == rec.path {
			ents[n-1].unmerged = true // another stage of an unmerged path
			continue
		}
		ents = append(ents, indexEntry{path: rec.path, mode: rec.mode})
		e := &ents[len(ents)-1]
		order = append(order, e)
		if rec.stage != 0 {
			e.unmerged = true
			continue
		}
		e.blob, e.blobID, e.skipWorktree = rec.oid, rec.id, rec.skipWorktree
		e.unwatched = rec.assumeValid || rec.skipWorktree || rec.intentToAdd
		e.size, e.ctime = rec.size, rec.ctime
	}
	return order, nil
}

// indexHashLen is the object id length of the index: HEAD's, else the one
// whose digest the index's checksum trailer is.
func indexHashLen(head string, data []byte) (int, bool) {
	switch len(head) {
	case 40:
		return 20, true
	case 64:
		return 32, true
	}
	if len(data) > 20 {
		if sum := sha1.Sum(data[:len(data)-20]); bytes.Equal(sum[:], data[len(data)-20:]) {
			return 20, true
		}
	}
	if len(data) > 32 {
		if sum := sha256.Sum256(data[:len(data)-32]); bytes.Equal(sum[:], data[len(data)-32:]) {
			return 32, true
		}
	}
	return 0, false
}

// statusResult is what `git status --porcelain=v2 -z --branch` said.
type statusResult struct {
	head      string          // HEAD commit, "none" without commits
	dirty     map[string]bool // worktree differs from the index, or unmerged
	untracked []string
}

// parseStatus parses NUL-terminated porcelain v2 records:
//
//	# branch.oid <commit> | (initial)
//	1 <XY> <sub> <mH> <mI> <mW> <hH> <hI> <path>
//	2 <XY> <sub> <mH> <mI> <mW> <hH> <hI> <X><score> <path> NUL <orig>
//	u <XY> <sub> <m1> <m2> <m3> <mW> <h1> <h2> <h3> <path>
//	? <path>
//	! <path>
//
// X is the index against HEAD, Y the worktree against the index: only Y
// (or an unmerged entry) makes the file's content differ from the blob
// the index names.
func parseStatus(out []byte) (*statusResult, error) {
	st := &statusResult{head: "", dirty: map[string]bool{}}
	recs := strings.Split(string(out), "\x00")
	for i := 0; i < len(recs); i++ {
		rec := recs[i]
		if rec == "" {
			continue
		}
		if len(rec) < 3 || rec[1] != ' ' {
			return nil, fmt.Errorf("unexpected git status record %q", rec)
		}
		switch rec[0] {
		case '#':
			if oid, ok := strings.CutPrefix(rec, "# branch.oid "); ok {
				st.head = oid
			}
		case '?':
			st.untracked = append(st.untracked, rec[2:])
		case '!':
		case '1', '2', 'u':
			n := map[byte]int{'1': 9, '2': 10, 'u': 11}[rec[0]]
			f := strings.SplitN(rec, " ", n)
			if len(f) != n || len(f[1]) != 2 {
				return nil, fmt.Errorf("unexpected git status record %q", rec)
			}
			if rec[0] == 'u' || f[1][1] != '.' {
				st.dirty[f[n-1]] = true
			}
			if rec[0] == '2' {
				i++ // the original path
			}
		default:
			return nil, fmt.Errorf("unexpected git status record %q", rec)
		}
	}
	switch {
	case st.head == "(initial)":
		st.head = "none"
	case len(st.head) != 40 && len(st.head) != 64:
		return nil, fmt.Errorf("git status gave no HEAD (%q)", st.head)
	}
	return st, nil
}
