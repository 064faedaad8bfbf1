package runs

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
)

// A running run keeps a reserve: a file of zeros beside run.json whose
// blocks are already allocated. When the disk fills up (typically with the
// run's own output), run.json is still replaced: the new record is written
// into the reserve in place, which needs no new space on an
// update-in-place file system (ext4, xfs, tmpfs), and the reserve is
// renamed over run.json; failing that (a copy-on-write file system), the
// reserve is deleted and the atomic write is tried again in the space it
// freed. So a run's outcome is recorded even when its output filled the
// disk. The reserve is removed when the run is finished (or found
// interrupted).
const (
	reserveName = ".run.json.reserve"
	// minReserve is several times a typical record (a few KiB); the
	// reserve grows to twice the record when the record grows (results).
	minReserve = 64 << 10
)

// reserveFor is the reserve size kept for a record of n bytes.
func reserveFor(n int) int64 { return max(minReserve, 2*int64(n)) }

// ensureReserve grows dir's reserve to size bytes, best effort: on a full
// disk the part written so far is kept (it still holds space).
func ensureReserve(dir string, size int64) {
	path := filepath.Join(dir, reserveName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, fileMode)
	if err != nil {
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() >= size {
		return
	}
	zeros := make([]byte, 16<<10)
	for off := fi.Size(); off < size; {
		n := min(int64(len(zeros)), size-off)
		k, err := f.WriteAt(zeros[:n], off)
		off += int64(k)
		if err != nil {
			_ = f.Truncate(off) // keep what was allocated
			return
		}
	}
}

// removeReserve deletes dir's reserve (the run is over).
func removeReserve(dir string) { _ = os.Remove(filepath.Join(dir, reserveName)) }

// isNoSpace reports whether err means the disk (or the quota) is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// replaceRecord replaces dir's run.json with data (the caller holds the
// run's lock): atomically, and on a full disk through the reserve.
func replaceRecord(dir string, data []byte) error {
	path := filepath.Join(dir, RecordName)
	err := writeAtomic(path, data)
	if err == nil || !isNoSpace(err) {
		return err
	}
	if rerr := writeViaReserve(dir, data); rerr == nil {
		ensureReserve(dir, reserveFor(len(data))) // best effort: the disk is full
		return nil
	}
	if rerr := os.Remove(filepath.Join(dir, reserveName)); rerr != nil {
		return err
	}
	if rerr := writeAtomic(path, data); rerr != nil {
		return err
	}
	return nil
}

// writeViaReserve writes data over the start of the reserve, cuts it to
// len(data), syncs it and renames it over run.json: atomic like
// writeAtomic, without allocating on an update-in-place file system.
func writeViaReserve(dir string, data []byte) error {
	path := filepath.Join(dir, reserveName)
	f, err := os.OpenFile(path, os.O_WRONLY, fileMode)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Truncate(int64(len(data))); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(path, filepath.Join(dir, RecordName)); err != nil {
		return err
	}
	return syncDir(dir)
}
