package syncer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/crabbox-dev/crabbox/internal/execx"
)

// fingerprintVersion changes whenever what goes into a fingerprint does.
const fingerprintVersion = "crabbox-sync-fingerprint/2"

// Fingerprint is a hex SHA-256 that changes whenever the remote tree a
// sync would produce could differ. It covers: a version tag, HEAD ("none"
// without commits), the settings that change the result (excludes,
// checksum, delete) and, for every manifest path in order, the path, its
// type and permission bits, and a content identity:
//
//   - the index blob id for a tracked path git reports unmodified. git's
//     stat check compares ctime, which every content write changes (an edit
//     that keeps size and mtime included); the stat settings are pinned on
//     the git command line and racily-clean entries are content-checked
//     by git itself; a path whose ctime (as git recorded it, fast scan,
//     or as lstat gives it) is not older than the index is hashed
//     (racyClean). For a path git reports unmodified, the fast scan takes
//     the type and permission bits from the index (644 or 755), so a
//     permission change git does not track (g+w) does not count;
//   - otherwise (untracked, modified, unmerged, assume-unchanged,
//     skip-worktree, type changed) the SHA-256 of the current content, or
//     of the link target for a symlink.
//
// The index facts come from the single git run BuildManifest made (so blob
// ids and "modified" flags describe the same index); for a Manifest not
// built by BuildManifest, Fingerprint runs that git command itself.
func Fingerprint(ctx context.Context, r execx.Runner, o Options, m *Manifest) (string, error) {
	fp, _, err := fingerprint(ctx, r, o, m)
	return fp, err
}

// fingerprint also returns, sorted, one record per regular file whose
// identity is a content hash (untracked or modified): 16 hex digits of
// that identity followed by the path. The remote keeps the records of the
// last sync and resets the mtime of files whose record changed, so
// rsync's size+mtime quick check cannot miss an edit that kept both.
func fingerprint(ctx context.Context, r execx.Runner, o Options, m *Manifest) (string, []string, error) {
	snap := m.snap
	if snap == nil {
		var err error
		if snap, err = readSnapshot(ctx, r, o.RepoRoot, false); err != nil {
			return "", nil, err
		}
	}
	n := len(m.Files)
	modes := make([]fs.FileMode, n)
	ids := make([]string, n)
	var todo []int
	for i, p := range m.Files {
		var ie *indexEntry
		if len(m.ents) == n {
			ie = m.ents[i]
		} else {
			ie = snap.entry(p)
		}
		var ctime int64
		if len(m.info) == n {
			modes[i], ctime = m.info[i].mode, m.info[i].ctime
		} else if ie != nil && ie.clean {
			fi := ie.info()
			modes[i], ctime = fi.mode, fi.ctime
		} else if fi, err := os.Lstat(filepath.Join(o.RepoRoot, filepath.FromSlash(p))); err == nil {
			modes[i], ctime = fi.Mode(), ctimeOf(fi)
		} else {
			ids[i] = "missing"
			continue
		}
		if ie != nil && !ie.dirty && ie.blob != "" && sameType(ie.mode, modes[i]) && !racyClean(ctime, snap.indexMtime) {
			ids[i] = ie.blobID
			if ids[i] == "" {
				ids[i] = "b:" + ie.blob
			}
			continue
		}
		todo = append(todo, i)
	}
	if err := hashFiles(ctx, o.RepoRoot, m.Files, modes, ids, todo); err != nil {
		return "", nil, err
	}
	recs := make([]string, 0, len(todo))
	for _, i := range todo {
		if modes[i].IsRegular() {
			sum := sha256.Sum256([]byte(ids[i]))
			recs = append(recs, hex.EncodeToString(sum[:8])+m.Files[i])
		}
	}
	sort.Strings(recs)

	// The fields go through one buffer: a hash write per field was most of
	// the cost on a large tree.
	h := sha256.New()
	buf := make([]byte, 0, 64<<10)
	field := func(s string) {
		if len(buf)+len(s)+1 > cap(buf) {
			h.Write(buf)
			buf = buf[:0]
		}
		buf = append(append(buf, s...), 0)
	}
	field(fingerprintVersion)
	field("head=" + snap.head)
	field("checksum=" + strconv.FormatBool(o.Checksum))
	field("delete=" + strconv.FormatBool(o.Delete))
	field("exclude=" + strconv.Itoa(len(o.Exclude)))
	for _, e := range o.Exclude {
		field(e)
	}
	field("files=" + strconv.Itoa(n))
	for i, p := range m.Files {
		field(p)
		field(modeString(modes[i]))
		field(ids[i])
	}
	h.Write(buf)
	return hex.EncodeToString(h.Sum(nil)), recs, nil
}

// hashFiles fills ids[i] for every i in todo with the content hash,
// spreading the work over a few goroutines.
func hashFiles(ctx context.Context, root string, files []string, modes []fs.FileMode, ids []string, todo []int) error {
	if len(todo) == 0 {
		return nil
	}
	workers := min(runtime.GOMAXPROCS(0), 8, len(todo))
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			hs := sha256.New()
			for {
				k := int(next.Add(1)) - 1
				if k >= len(todo) || ctx.Err() != nil {
					return
				}
				i := todo[k]
				id, err := contentID(filepath.Join(root, filepath.FromSlash(files[i])), modes[i], hs, buf)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	return firstErr
}

func contentID(name string, mode fs.FileMode, hs hash.Hash, buf []byte) (string, error) {
	hs.Reset()
	if mode&fs.ModeSymlink != 0 {
		target, err := os.Readlink(name)
		if err != nil {
			if os.IsNotExist(err) {
				return "missing", nil
			}
			return "", fmt.Errorf("fingerprint: %w", err)
		}
		io.WriteString(hs, target)
		return "l:" + hex.EncodeToString(hs.Sum(nil)), nil
	}
	f, err := os.Open(name)
	if err != nil {
		if os.IsNotExist(err) {
			return "missing", nil
		}
		return "", fmt.Errorf("fingerprint: %w", err)
	}
	defer f.Close()
	if _, err := io.CopyBuffer(hs, f, buf); err != nil {
		return "", fmt.Errorf("fingerprint: reading %s: %w", name, err)
	}
	return "f:" + hex.EncodeToString(hs.Sum(nil)), nil
}

func sameType(indexMode uint32, m fs.FileMode) bool {
	switch indexMode {
	case 0o120000:
		return m&fs.ModeSymlink != 0
	case 0o100644, 0o100755:
		return m.IsRegular()
	}
	return false
}

// modeString is the git-like mode of a file: 120000 for a symlink, else
// 100 followed by the permission bits (rsync -a copies them).
func modeString(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "120000"
	case m.Perm() == 0o644:
		return "100644"
	case m.Perm() == 0o755:
		return "100755"
	}
	return strconv.FormatUint(uint64(0o100000|m.Perm()), 8)
}
