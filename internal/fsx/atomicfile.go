package fsx

import (
	"errors"
	"os"
	"path/filepath"
)

// AtomicFile is a file streamed under a temporary name in its target's
// directory and renamed over the target only on Commit, so the target
// never holds a partial write from this file. Abort (or a failed Commit)
// removes the temporary file; a target that existed before is then left
// as it was.
type AtomicFile struct {
	// File is the temporary file to write to (hand it to a child process
	// as is: an *os.File needs no copying goroutine).
	File *os.File
	path string
	done bool
}

// CreateAtomic starts an AtomicFile for path with mode perm.
func CreateAtomic(path string, perm os.FileMode) (*AtomicFile, error) {
	dir, name := filepath.Split(path)
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &AtomicFile{File: f, path: path}, nil
}

// Path is the target path.
func (a *AtomicFile) Path() string { return a.path }

// Commit flushes the file to disk and renames it over the target,
// returning the bytes it holds. It may be called once; after a failure
// the temporary file is gone.
func (a *AtomicFile) Commit() (int64, error) {
	if a.done {
		return 0, errors.New("fsx: atomic file already finished")
	}
	a.done = true
	tmp := a.File.Name()
	fail := func(err error) (int64, error) {
		a.File.Close()
		os.Remove(tmp)
		return 0, err
	}
	st, err := a.File.Stat()
	if err != nil {
		return fail(err)
	}
	if err := a.File.Sync(); err != nil {
		return fail(err)
	}
	if err := a.File.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, a.path); err != nil {
		os.Remove(tmp)
		return 0, err
	}
	return st.Size(), SyncDir(filepath.Dir(a.path))
}

// Abort drops the temporary file (a no-op after Commit or Abort).
func (a *AtomicFile) Abort() {
	if a.done {
		return
	}
	a.done = true
	a.File.Close()
	os.Remove(a.File.Name())
}
