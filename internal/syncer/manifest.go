package syncer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/gitrepo"
)

// gitStatConfig pins the settings git's "is this file modified?" stat
// check depends on, so a user's config can never make a changed file look
// clean: ctime is compared (a content edit always changes it), no
// stat-skipping, no fsmonitor trust.
var gitStatConfig = []string{
	"-c", "core.trustctime=true",
	"-c", "core.checkStat=default",
	"-c", "core.ignoreStat=false",
	"-c", "core.fsmonitor=false",
}

// Manifest is what one sync sends.
type Manifest struct {
	Files   []string // slash paths relative to the repo root, sorted (byte order)
	Bytes   int64    // sum of the Files' sizes
	Deleted []string // tracked paths deleted locally (in scope of the rules), sorted
	// Skipped are in-scope entries rsync cannot send as files: submodules,
	// nested repositories, sockets and the like. They are not synced.
	Skipped []string

	info []fileInfo    // parallel to Files: lstat result at manifest time
	ents []*indexEntry // parallel to Files: the index entry, nil if untracked
	snap *snapshot     // the git state the manifest was built from
}

type fileInfo struct {
	mode  fs.FileMode
	size  int64
	ctime int64 // status change time, Unix seconds (0 where unknown)
}

// indexEntry is one tracked path as the scan saw it (fastSnapshot, or
// `git ls-files -v -s --cached --modified`).
type indexEntry struct {
	path         string
	mode         uint32 // octal index mode: 100644, 100755, 120000, 160000
	blob         string // stage-0 object id; "" for unmerged paths
	blobID       string // "b:" + blob when the fast scan made it ("" otherwise)
	dirty        bool   // content may differ from blob: hash the file instead
	skipWorktree bool
	// clean (fast scan only): git found the file unchanged against the
	// index, so size and ctime (git's recorded stat data) stand for an
	// lstat of it.
	clean       bool
	size, ctime int64
	// fast scan only: unmerged (stages 1-3), and unwatched (flags that
	// keep git from looking at the file: assume-unchanged, skip-worktree,
	// intent-to-add).
	unmerged, unwatched bool
}

// info is a clean entry's fileInfo from git's recorded stat data.
func (e *indexEntry) info() fileInfo {
	mode := fs.FileMode(0o644)
	switch e.mode {
	case 0o100755:
		mode = 0o755
	case 0o120000:
		mode = fs.ModeSymlink | 0o777
	}
	return fileInfo{mode: mode, size: e.size, ctime: e.ctime}
}

// snapshot is the git state fingerprints and manifests are built from.
// All index facts come from ONE git process, so the blob ids and the
// "modified" flags describe the same index.
type snapshot struct {
	head      string                 // HEAD commit, "none" without commits
	index     map[string]*indexEntry // by path: see entry (fast scan: built when first asked)
	order     []*indexEntry          // fast scan: the index's entries in byte order
	indexOnce sync.Once
	untracked []string
	// indexMtime is the index file's mtime (Unix seconds) just before git
	// read it; -1 when unknown. See racyClean.
	indexMtime int64
	fast       bool // built by fastSnapshot
}

// entry is the index entry for path p, nil when p is not tracked.
func (s *snapshot) entry(p string) *indexEntry {
	s.indexOnce.Do(func() {
		if s.index == nil {
			s.index = make(map[string]*indexEntry, len(s.order))
			for _, e := range s.order {
				s.index[e.path] = e
			}
		}
	})
	return s.index[p]
}

// RepoName is the remote directory name for the repository at repoRoot:
// the last path segment of origin's URL without ".git"
// (git@github.com:o/r.git → r), else the base name of repoRoot. Characters
// outside [A-Za-z0-9._-] become "-" so the name is safe in any remote
// path. The URL is read from the config files (gitrepo.OriginURL), or,
// where they leave any doubt, asked of git.
func RepoName(ctx context.Context, r execx.Runner, repoRoot string) string {
	url, ok := gitrepo.OriginURL(repoRoot)
	if !ok {
		res, err := r.Run(ctx, execx.Cmd{Name: "git", Args: []string{"-C", repoRoot, "config", "--get", "remote.origin.url"}})
		if err == nil {
			url = string(res.Stdout)
		}
	}
	name := nameFromURL(strings.TrimSpace(url))
	if name == "" {
		abs, err := filepath.Abs(repoRoot)
		if err != nil {
			abs = repoRoot
		}
		name = filepath.Base(abs)
	}
	return sanitizeName(name)
}

func nameFromURL(u string) string {
	u = strings.TrimRight(u, "/")
	u = strings.TrimSuffix(u, ".git")
	u = strings.TrimRight(u, "/")
	if i := strings.LastIndexAny(u, "/:\\"); i >= 0 {
		u = u[i+1:]
	}
	return u
}

func sanitizeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	s = string(b)
	if strings.Trim(s, ".") == "" {
		return "repo"
	}
	return s
}

// WorkdirFor is the remote workdir <workRoot>/<leaseID>/<repoName>.
func WorkdirFor(workRoot, leaseID, repoName string) string {
	return path.Join(workRoot, leaseID, repoName)
}

// BuildManifest lists what a sync sends from o.RepoRoot (which must be
// the repository's top level): tracked and untracked, non-ignored files
// (`git ls-files --cached --others --exclude-standard`, here with -v -s
// --modified so the same single git run also yields the index facts the
// fingerprint needs) filtered by the Rules of o, with sizes from lstat.
// Tracked paths missing on disk are Deleted. Tracked paths outside a
// sparse checkout (skip-worktree and missing) are an error: they would
// otherwise look deleted.
func BuildManifest(ctx context.Context, r execx.Runner, o Options) (*Manifest, error) {
	var (
		wg      sync.WaitGroup
		snap    *snapshot
		snapErr error
		ignore  []string
		ignErr  error
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		snap, snapErr = readSnapshot(ctx, r, o.RepoRoot, true)
	}()
	go func() {
		defer wg.Done()
		data, err := os.ReadFile(filepath.Join(o.RepoRoot, ".crabboxignore"))
		switch {
		case err == nil:
			ignore = ParseIgnoreFile(data)
		case !errors.Is(err, fs.ErrNotExist):
			ignErr = fmt.Errorf("reading .crabboxignore: %w", err)
		}
	}()
	wg.Wait()
	if snapErr != nil {
		return nil, snapErr
	}
	if ignErr != nil {
		return nil, ignErr
	}
	rules := NewRules(o.Exclude, ignore)
	m := &Manifest{snap: snap}

	type cand struct {
		p  string
		ie *indexEntry
	}
	cands := make([]cand, 0, len(snap.order)+len(snap.index)+len(snap.untracked))
	if snap.order != nil {
		// The index's order is byte order: merged with the untracked
		// paths, sorted, and no sort of every path.
		untracked := slices.Clone(snap.untracked)
		slices.Sort(untracked)
		u := 0
		for _, ie := range snap.order {
			for ; u < len(untracked) && untracked[u] < ie.path; u++ {
				cands = append(cands, cand{p: untracked[u]})
			}
			for ; u < len(untracked) && untracked[u] == ie.path; u++ {
			}
			cands = append(cands, cand{ie.path, ie})
		}
		for ; u < len(untracked); u++ {
			cands = append(cands, cand{p: untracked[u]})
		}
	} else {
		for p, ie := range snap.index {
			cands = append(cands, cand{p, ie})
		}
		for _, p := range snap.untracked {
			if snap.entry(p) == nil {
				cands = append(cands, cand{p: p})
			}
		}
		sort.Slice(cands, func(i, j int) bool { return cands[i].p < cands[j].p })
	}

	// Filter first, then lstat what is left (in parallel: on a large repo
	// the lstat calls are most of the local cost), then classify in order.
	type kept struct {
		p      string
		ie     *indexEntry
		nested bool
		fi     fs.FileInfo
		err    error
	}
	ks := make([]kept, 0, len(cands))
	for _, c := range cands {
		p := strings.TrimSuffix(c.p, "/")
		trackedRegular := c.ie != nil && (c.ie.mode == 0o100644 || c.ie.mode == 0o100755)
		if p == "" || rules.Excluded(p, trackedRegular) {
			continue
		}
		// --others shows a nested repository as "dir/".
		ks = append(ks, kept{p: p, ie: c.ie, nested: p != c.p})
	}
	parallel(len(ks), func(i int) {
		k := &ks[i]
		if k.ie != nil && k.ie.clean {
			return // git checked it: its recorded stat data stands
		}
		if !k.nested && (k.ie == nil || k.ie.mode != 0o160000) {
			k.fi, k.err = os.Lstat(filepath.Join(o.RepoRoot, filepath.FromSlash(k.p)))
		}
	})
	var sparse []string
	m.Files, m.info, m.ents = make([]string, 0, len(ks)), make([]fileInfo, 0, len(ks)), make([]*indexEntry, 0, len(ks))
	for _, k := range ks {
		p, fi, err := k.p, k.fi, k.err
		switch {
		case k.nested || (k.ie != nil && k.ie.mode == 0o160000):
			m.Skipped = append(m.Skipped, p)
		case k.ie != nil && k.ie.clean:
			fi := k.ie.info()
			m.Files = append(m.Files, p)
			m.info = append(m.info, fi)
			m.ents = append(m.ents, k.ie)
			m.Bytes += fi.size
		case err != nil && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)):
			switch {
			case k.ie == nil:
				// untracked and gone since git listed it
			case k.ie.skipWorktree:
				sparse = append(sparse, p)
			default:
				m.Deleted = append(m.Deleted, p)
			}
		case err != nil:
			return nil, fmt.Errorf("stat %s: %w", p, err)
		case fi.Mode().IsRegular() || fi.Mode()&fs.ModeSymlink != 0:
			m.Files = append(m.Files, p)
			m.info = append(m.info, fileInfo{mode: fi.Mode(), size: fi.Size(), ctime: ctimeOf(fi)})
			m.ents = append(m.ents, k.ie)
			m.Bytes += fi.Size()
		case fi.IsDir() && k.ie != nil:
			m.Deleted = append(m.Deleted, p) // a tracked file replaced by a directory
		default:
			m.Skipped = append(m.Skipped, p)
		}
	}
	if len(sparse) > 0 {
		return nil, fmt.Errorf("%d tracked path(s) are outside the sparse checkout (skip-worktree), e.g. %s; "+
			"crabbox cannot tell them from deletions; %s",
			len(sparse), sparse[0], exitcode.NextAction("disable sparse checkout or exclude them with sync.exclude / .crabboxignore"))
	}
	return m, nil
}

// fastScan is false only in tests that compare the two scans.
var fastScan = true

// readSnapshot is fastSnapshot (one git process), else, for a repository
// it does not cover, lsFilesSnapshot.
func readSnapshot(ctx context.Context, r execx.Runner, root string, others bool) (*snapshot, error) {
	if !fastScan {
		return lsFilesSnapshot(ctx, r, root, others)
	}
	s, err := fastSnapshot(ctx, r, root, others)
	if errors.Is(err, errIndexUnsupported) {
		return lsFilesSnapshot(ctx, r, root, others)
	}
	return s, err
}

// lsFilesSnapshot runs, concurrently, `git ls-files -v -s --cached
// --modified [--others --exclude-standard] -z` and `git rev-parse -q
// --verify HEAD^{commit}`.
func lsFilesSnapshot(ctx context.Context, r execx.Runner, root string, others bool) (*snapshot, error) {
	args := append([]string{"-C", root}, gitStatConfig...)
	args = append(args, "ls-files", "-v", "-s", "--cached", "--modified")
	if others {
		args = append(args, "--others", "--exclude-standard")
	}
	args = append(args, "-z")
	var (
		wg   sync.WaitGroup
		head string
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		head = headCommit(ctx, r, root)
	}()
	indexMtime := indexFileMtime(root)
	res, err := r.Run(ctx, execx.Cmd{Name: "git", Args: args})
	wg.Wait()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("listing files with git in %s: %w", root, err)
	}
	s, err := parseLsFiles(res.Stdout)
	if err != nil {
		return nil, err
	}
	s.head, s.indexMtime = head, indexMtime
	return s, nil
}

func headCommit(ctx context.Context, r execx.Runner, root string) string {
	res, err := r.Run(ctx, execx.Cmd{Name: "git", Args: []string{"-C", root, "rev-parse", "-q", "--verify", "HEAD^{commit}"}})
	if h := strings.TrimSpace(string(res.Stdout)); err == nil && h != "" {
		return h
	}
	return "none"
}

// parseLsFiles parses NUL-terminated `git ls-files -v -s` records:
//
//	"? <path>"                            untracked (--others)
//	"<tag> <mode> <object> <stage>\t<path>"  index entry
//
// Tags: H cached, C modified (the path is listed again), S skip-worktree,
// M unmerged; lower case means assume-unchanged.
func parseLsFiles(out []byte) (*snapshot, error) {
	s := &snapshot{index: map[string]*indexEntry{}}
	for len(out) > 0 {
		i := bytes.IndexByte(out, 0)
		if i < 0 {
			i = len(out)
		}
		rec := string(out[:i])
		out = out[min(i+1, len(out)):]
		if rec == "" {
			continue
		}
		if len(rec) < 3 || rec[1] != ' ' {
			return nil, fmt.Errorf("unexpected git ls-files record %q", rec)
		}
		tag := rec[0]
		if tag == '?' {
			s.untracked = append(s.untracked, rec[2:])
			continue
		}
		meta, p, ok := strings.Cut(rec[2:], "\t")
		f := strings.SplitN(meta, " ", 3)
		if !ok || len(f) != 3 {
			return nil, fmt.Errorf("unexpected git ls-files record %q", rec)
		}
		mode, err := strconv.ParseUint(f[0], 8, 32)
		if err != nil {
			return nil, fmt.Errorf("unexpected git ls-files mode in %q", rec)
		}
		e := s.index[p]
		if e == nil {
			e = &indexEntry{path: p, mode: uint32(mode)}
			s.index[p] = e
		}
		if f[2] == "0" {
			e.blob = f[1]
			e.mode = uint32(mode)
		} else {
			e.dirty = true // unmerged
		}
		switch tag {
		case 'H':
		case 'S', 's':
			e.skipWorktree, e.dirty = true, true
		default: // C modified, M unmerged, h assume-unchanged, anything new
			e.dirty = true
		}
	}
	return s, nil
}

// parallel runs f(0..n-1) on a few goroutines.
func parallel(n int, f func(i int)) {
	workers := min(max(runtime.GOMAXPROCS(0)*2, 4), 16, n)
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	const chunk = 64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				start := int(next.Add(chunk)) - chunk
				if start >= n {
					return
				}
				for i := start; i < min(start+chunk, n); i++ {
					f(i)
				}
			}
		}()
	}
	wg.Wait()
}
