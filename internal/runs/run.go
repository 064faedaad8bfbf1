package runs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/crabbox-dev/crabbox/internal/fsx"
	"github.com/crabbox-dev/crabbox/internal/lease"
)

// Run is a run being recorded by this process.
type Run struct {
	store *Store
	id    string
	dir   string

	mu       sync.Mutex // guards rec, finished
	rec      Record
	finished bool

	logMu   sync.Mutex // guards the fields below
	seg     *os.File   // segment being written; nil once closed
	gen     int
	segSize int64
	written int64 // bytes written to the log
	dropped int64 // bytes of output not written after logErr
	logErr  error
	closed  bool
}

// Start records a new run in state running and opens its log. rec.ID is
// minted when empty (else it must be a run ID not used yet); StartedAt
// defaults to now; State, ExitCode, EndedAt, the log fields and the owner
// (PID, PIDStart, BootID, Host: this process) are set by Start.
func (s *Store) Start(rec Record) (*Run, error) {
	if s.Dir == "" {
		return nil, errors.New("no state directory for run history: set XDG_STATE_HOME or HOME")
	}
	if rec.ID == "" {
		rec.ID = lease.NewRunID()
	} else if err := ValidateID(rec.ID); err != nil {
		return nil, err
	}
	rec = rec.Clone()
	if rec.StartedAt.IsZero() {
		rec.StartedAt = s.now()
	}
	rec.StartedAt = rec.StartedAt.UTC()
	rec.State = StateRunning
	rec.ExitCode = nil
	rec.EndedAt = time.Time{}
	rec.LogBytes, rec.LogTruncated = 0, false
	me := self()
	rec.PID, rec.PIDStart, rec.BootID, rec.Host = os.Getpid(), me.start, me.boot, me.host

	if err := fsx.EnsurePrivateDir(s.RunsDir()); err != nil {
		return nil, fmt.Errorf("run history: %w", err)
	}
	// Build the run directory aside and rename it into place, so a listed
	// run directory always has its run.json.
	tmp, err := os.MkdirTemp(s.RunsDir(), ".tmp-"+rec.ID+"-")
	if err != nil {
		return nil, fmt.Errorf("run history: %w", err)
	}
	fail := func(err error) (*Run, error) {
		_ = os.RemoveAll(tmp)
		return nil, fmt.Errorf("run history: %w", err)
	}
	if err := os.Chmod(tmp, dirMode); err != nil {
		return fail(err)
	}
	data, err := encodeRecord(&rec)
	if err != nil {
		return fail(err)
	}
	if err := writeAtomic(filepath.Join(tmp, RecordName), data); err != nil {
		return fail(err)
	}
	// The lock file and the reserve are made now, while there is space:
	// the record can then be rewritten when the output fills the disk.
	lock, err := os.OpenFile(filepath.Join(tmp, lockName), os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return fail(err)
	}
	_ = lock.Close()
	ensureReserve(tmp, reserveFor(len(data)))
	seg, err := openSegment(tmp, 0)
	if err != nil {
		return fail(err)
	}
	dir := s.RunDir(rec.ID)
	if err := os.Rename(tmp, dir); err != nil {
		seg.Close()
		if _, serr := os.Lstat(dir); serr == nil {
			err = fmt.Errorf("run %s already exists", rec.ID)
		}
		return fail(err)
	}
	_ = syncDir(s.RunsDir())
	return &Run{store: s, id: rec.ID, dir: dir, rec: rec, seg: seg}, nil
}

func openSegment(dir string, gen int) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, segName(gen)), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, fileMode)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(fileMode); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ID is the run ID.
func (r *Run) ID() string { return r.id }

// Dir is the run's directory.
func (r *Run) Dir() string { return r.dir }

// Record returns a copy of the record as it stands, log size included.
func (r *Run) Record() Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.rec.Clone()
	r.logStats(&rec)
	return rec
}

// Log is the combined output sink. It is safe for concurrent writes (the
// stdout and stderr copiers), never returns an error (so an io.MultiWriter
// tee never stops the live stream because of the log; see LogErr) and drops
// writes after Finish. Only the last MaxLogBytes are kept.
func (r *Run) Log() io.Writer { return logWriter{r} }

type logWriter struct{ r *Run }

func (w logWriter) Write(p []byte) (int, error) {
	w.r.writeLog(p)
	return len(p), nil
}

// LogErr is the first error writing the log, if any; output after it was
// not kept.
func (r *Run) LogErr() error {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	return r.logErr
}

func (r *Run) writeLog(p []byte) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	defer func() {
		if r.logErr != nil && !r.closed {
			r.dropped += int64(len(p)) // output the log could not keep
		}
	}()
	for len(p) > 0 && !r.closed && r.logErr == nil {
		if r.segSize >= MaxLogBytes {
			if err := r.rotate(); err != nil {
				r.logErr = err
				return
			}
		}
		n := min(int64(len(p)), MaxLogBytes-r.segSize)
		k, err := r.seg.Write(p[:n])
		r.segSize += int64(k)
		r.written += int64(k)
		p = p[k:]
		if err != nil {
			r.logErr = err
			return
		}
	}
}

// rotate starts segment gen+1 and deletes gen-1: the full segment gen and
// the new one always hold the last MaxLogBytes.
func (r *Run) rotate() error {
	next, err := openSegment(r.dir, r.gen+1)
	if err != nil {
		return err
	}
	_ = r.seg.Close()
	r.seg, r.segSize = next, 0
	r.gen++
	if r.gen >= 2 {
		if err := os.Remove(filepath.Join(r.dir, segName(r.gen-2))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func (r *Run) logStats(rec *Record) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	rec.LogBytes = r.written + r.dropped
	rec.LogTruncated = r.written > MaxLogBytes
	rec.LogIncomplete, rec.LogError, rec.LogStoppedAt = false, "", 0
	if r.logErr != nil {
		rec.LogIncomplete, rec.LogError, rec.LogStoppedAt = true, errText(r.logErr), r.written
	}
}

// errText is err without the path a *fs.PathError adds ("no space left on
// device"): the record says which run, not where its files are.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Op + " " + filepath.Base(pe.Path) + ": " + pe.Err.Error()
	}
	return err.Error()
}

func (r *Run) closeLog() {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	if r.seg != nil {
		if err := r.seg.Sync(); err != nil && r.logErr == nil {
			r.logErr = err
		}
		_ = r.seg.Close()
		r.seg = nil
	}
}

// Update changes the record with fn and persists it (phases, results,
// workspace, ...). fn cannot change the ID or the state: Finish ends a run.
// When the record cannot be written the change is still kept, and written
// with the next record that is (Finish).
func (r *Run) Update(fn func(*Record)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := r.rec.Clone()
	fn(&next)
	next.ID, next.State = r.id, r.rec.State
	r.logStats(&next)
	r.rec = next
	if err := writeRecord(r.dir, &next); err != nil {
		return fmt.Errorf("run %s: save record: %w", r.id, err)
	}
	return nil
}

// Finish closes the log and records the end: state succeeded, failed or
// interrupted, the exit code (a negative exitCode records none, e.g. when
// the command never ran), EndedAt = now. Finishing a finished run is a
// no-op. When the record cannot be written (even through the reserve) the
// error is returned and the outcome is still kept: AddFinalPhase writes
// it with the record.
func (r *Run) Finish(state string, exitCode int) error {
	if state != StateSucceeded && state != StateFailed && state != StateInterrupted {
		return fmt.Errorf("run %s: cannot finish in state %q", r.id, state)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return nil
	}
	r.closeLog()
	next := r.rec.Clone()
	next.State = state
	next.ExitCode = nil
	if exitCode >= 0 {
		code := exitCode
		next.ExitCode = &code
	}
	next.EndedAt = r.store.now()
	if next.EndedAt.Before(next.StartedAt) {
		next.EndedAt = next.StartedAt
	}
	r.logStats(&next)
	r.rec = next
	r.finished = true
	if err := writeRecord(r.dir, &next); err != nil {
		return fmt.Errorf("run %s: save record: %w", r.id, err)
	}
	return nil
}

// FailAfterFinish marks a finished run failed in step with exitCode: a
// step after the recorded outcome (the release) failed, so the run did
// too, though its command passed.
func (r *Run) FailAfterFinish(step string, exitCode int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.finished {
		return fmt.Errorf("run %s: failed step %q before Finish", r.id, step)
	}
	next := r.rec.Clone()
	code := exitCode
	next.State, next.ExitCode, next.FailedStep = StateFailed, &code, step
	r.logStats(&next)
	r.rec = next
	if err := writeRecord(r.dir, &next); err != nil {
		return fmt.Errorf("run %s: save record: %w", r.id, err)
	}
	return nil
}

// AddFinalPhase records a step that ran after Finish, the release of the
// lease: it appends p and moves EndedAt to now, so the record's duration
// covers the whole crabbox run (the figure run prints as total=). State
// and exit code stay as Finish recorded them; a process killed during the
// step leaves the record as Finish wrote it.
func (r *Run) AddFinalPhase(p Phase) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.finished {
		return fmt.Errorf("run %s: final phase %q before Finish", r.id, p.Name)
	}
	next := r.rec.Clone()
	next.Phases = append(next.Phases, p)
	if end := r.store.now(); end.After(next.EndedAt) {
		next.EndedAt = end
	}
	r.logStats(&next)
	r.rec = next
	if err := writeRecord(r.dir, &next); err != nil {
		return fmt.Errorf("run %s: save record: %w", r.id, err)
	}
	return nil
}
