package runs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/fsx"
	"github.com/crabbox-dev/crabbox/internal/lease"
)

// Layout under the state dir.
const (
	DirName    = "runs"     // <stateDir>/runs
	RecordName = "run.json" // <stateDir>/runs/<id>/run.json
	lockName   = "run.lock" // flock for rewriting run.json
	segPrefix  = "output."  // log segments output.<n>.log
	segSuffix  = ".log"
)

// MaxLogBytes is how much of a run's combined output is retained: the last
// 8 MiB. The log is written in segments of MaxLogBytes; when one is full a
// new one starts and the one before the previous is deleted, so the last
// MaxLogBytes are always in the newest two.
const MaxLogBytes = 8 << 20

// maxRecordBytes bounds a run.json read (a record is a few KiB; results
// are capped by the results package).
const maxRecordBytes = 16 << 20

// Errors a Get or ReadLog can match with errors.Is. The returned errors also
// carry exit codes (2 invalid ID, 5 not found).
var (
	ErrInvalidID = errors.New("invalid run ID")
	ErrNotFound  = errors.New("run not found")
)

type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }

// ValidateID checks that id is a run ID (run_ + 12 lowercase hex); the
// error carries exit code 2.
func ValidateID(id string) error {
	if lease.IsRunID(id) {
		return nil
	}
	return exitcode.New(exitcode.Usage, &kindError{
		msg:  fmt.Sprintf("invalid run ID %q: want run_ followed by 12 lowercase hex digits", id),
		kind: ErrInvalidID,
	})
}

func notFound(id string) error {
	return exitcode.New(exitcode.NotFound, &kindError{msg: fmt.Sprintf("run %s not found", id), kind: ErrNotFound})
}

// Store is the run history under Dir (the crabbox state dir).
type Store struct {
	Dir string
	Now func() time.Time
}

// New returns the store under stateDir.
func New(stateDir string) *Store { return &Store{Dir: stateDir, Now: time.Now} }

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// RunsDir is <Dir>/runs.
func (s *Store) RunsDir() string { return filepath.Join(s.Dir, DirName) }

// RunDir is the directory of run id.
func (s *Store) RunDir(id string) string { return filepath.Join(s.RunsDir(), id) }

// Filter selects runs for List. Empty fields match everything; LeaseID
// matches a run's lease ID or its slug; Limit <= 0 means no limit.
type Filter struct {
	LeaseID string
	State   string
	Limit   int
}

func (f Filter) match(r *Record) bool {
	if f.LeaseID != "" && r.LeaseID != f.LeaseID && r.Slug != f.LeaseID {
		return false
	}
	return f.State == "" || r.State == f.State
}

// Get reads one run. A running record whose owner process is gone comes
// back (and is rewritten) as interrupted.
func (s *Store) Get(id string) (*Record, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	if s.Dir == "" {
		return nil, notFound(id)
	}
	dir := s.RunDir(id)
	rec, err := readRecord(dir, id)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", id, err)
	}
	settle(dir, rec)
	return rec, nil
}

// List returns the runs matching f, newest first. Unreadable records are
// skipped; Scan also reports how many.
func (s *Store) List(f Filter) ([]Record, error) {
	recs, _, err := s.Scan(f)
	return recs, err
}

// Scan is List that also returns the number of run directories skipped
// because their run.json is missing, unreadable or not a valid record.
func (s *Store) Scan(f Filter) (recs []Record, skipped int, err error) {
	recs = []Record{}
	if s.Dir == "" {
		return recs, 0, nil
	}
	entries, err := os.ReadDir(s.RunsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return recs, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	for _, e := range entries {
		if !lease.IsRunID(e.Name()) || !e.IsDir() {
			continue // temp dirs of a Start in progress, stray files
		}
		dir := filepath.Join(s.RunsDir(), e.Name())
		rec, err := readRecord(dir, e.Name())
		if err != nil {
			skipped++
			continue
		}
		settle(dir, rec)
		if f.match(rec) {
			recs = append(recs, *rec)
		}
	}
	sort.SliceStable(recs, func(i, j int) bool {
		if !recs[i].StartedAt.Equal(recs[j].StartedAt) {
			return recs[i].StartedAt.After(recs[j].StartedAt)
		}
		return recs[i].ID > recs[j].ID
	})
	if f.Limit > 0 && len(recs) > f.Limit {
		recs = recs[:f.Limit]
	}
	return recs, skipped, nil
}

// ReadLog returns run id's retained output (at most the last MaxLogBytes),
// only its last tail lines when tail > 0, and whether any output was
// dropped to stay within MaxLogBytes.
func (s *Store) ReadLog(id string, tail int) (string, bool, error) {
	rec, err := s.Get(id)
	if err != nil {
		return "", false, err
	}
	data, written, err := readLog(s.RunDir(id))
	if err != nil {
		return "", false, fmt.Errorf("run %s: read log: %w", id, err)
	}
	truncated := rec.LogTruncated || written > MaxLogBytes
	if tail > 0 {
		data = lastLines(data, tail)
	}
	return string(data), truncated, nil
}

// lastLines returns the last n lines of data; a final newline does not
// start another line.
func lastLines(data []byte, n int) []byte {
	end := len(data)
	if end > 0 && data[end-1] == '\n' {
		end--
	}
	for i := end - 1; i >= 0; i-- {
		if data[i] == '\n' {
			n--
			if n == 0 {
				return data[i+1:]
			}
		}
	}
	return data
}

// ---------------------------------------------------------------------------
// Records on disk

func readRecord(dir, id string) (*Record, error) {
	f, err := os.Open(filepath.Join(dir, RecordName))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecordBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxRecordBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", RecordName, maxRecordBytes)
	}
	var rec Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("invalid %s: %w", RecordName, err)
	}
	if rec.ID != id {
		return nil, fmt.Errorf("invalid %s: id %q in directory %s", RecordName, rec.ID, id)
	}
	if !ValidState(rec.State) {
		return nil, fmt.Errorf("invalid %s: state %q", RecordName, rec.State)
	}
	// Times are kept and rewritten in UTC, and JSON holds years 0-9999
	// only: a time outside that range once in UTC (e.g.
	// 9999-12-31T23:59:59-23:59) would make the record unprintable.
	for _, tm := range []time.Time{rec.StartedAt, rec.EndedAt} {
		if y := tm.UTC().Year(); y < 0 || y > 9999 {
			return nil, fmt.Errorf("invalid %s: time %s out of range", RecordName, tm.Format(time.RFC3339))
		}
	}
	return &rec, nil
}

func encodeRecord(rec *Record) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rec); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeRecord replaces dir's run.json under the run's lock (through the
// reserve on a full disk). A running record's reserve is grown to match
// the record; a finished one's is removed.
func writeRecord(dir string, rec *Record) error {
	data, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	unlock, err := fsx.Lock(filepath.Join(dir, lockName))
	if err != nil {
		return err
	}
	defer unlock()
	if err := replaceRecord(dir, data); err != nil {
		return err
	}
	if rec.State == StateRunning {
		ensureReserve(dir, reserveFor(len(data)))
	} else {
		removeReserve(dir)
	}
	return nil
}

// settle turns a running record whose owner is gone into an interrupted
// one, and rewrites run.json best-effort under the run's lock (re-reading
// it first, so a record finished meanwhile is kept as it is).
func settle(dir string, rec *Record) {
	if rec.State != StateRunning || ownerAlive(rec) {
		return
	}
	markInterrupted(dir, rec)
	unlock, err := fsx.Lock(filepath.Join(dir, lockName))
	if err != nil {
		return
	}
	defer unlock()
	cur, err := readRecord(dir, rec.ID)
	if err != nil {
		return
	}
	if cur.State != StateRunning {
		*rec = *cur
		return
	}
	if cur.PID != rec.PID || cur.PIDStart != rec.PIDStart || cur.BootID != rec.BootID {
		return // another owner took over; leave it to the next reader
	}
	markInterrupted(dir, cur)
	data, err := encodeRecord(cur)
	if err != nil {
		return
	}
	if replaceRecord(dir, data) == nil {
		removeReserve(dir)
		*rec = *cur
	}
}

// markInterrupted sets the interrupted state, with EndedAt the last write
// to the log (or StartedAt when later or unknown) and the log size from
// disk.
func markInterrupted(dir string, rec *Record) {
	rec.State = StateInterrupted
	rec.ExitCode = nil
	segs, _ := listSegments(dir)
	end := rec.StartedAt
	for _, sg := range segs {
		if sg.mtime.After(end) {
			end = sg.mtime
		}
	}
	rec.EndedAt = end.UTC()
	if w := writtenFrom(segs); w > rec.LogBytes {
		rec.LogBytes = w
	}
	if rec.LogBytes > MaxLogBytes {
		rec.LogTruncated = true
	}
}

// ---------------------------------------------------------------------------
// Log segments

type segment struct {
	gen   int
	size  int64
	mtime time.Time
}

func segName(gen int) string { return segPrefix + strconv.Itoa(gen) + segSuffix }

// listSegments returns dir's log segments, oldest first.
func listSegments(dir string) ([]segment, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []segment
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, segPrefix) || !strings.HasSuffix(name, segSuffix) {
			continue
		}
		num := strings.TrimSuffix(strings.TrimPrefix(name, segPrefix), segSuffix)
		gen, err := strconv.Atoi(num)
		if err != nil || gen < 0 || strconv.Itoa(gen) != num {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		segs = append(segs, segment{gen: gen, size: info.Size(), mtime: info.ModTime()})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].gen < segs[j].gen })
	return segs, nil
}

// writtenFrom is the total bytes ever written, from the segments: every
// segment before the newest was exactly MaxLogBytes.
func writtenFrom(segs []segment) int64 {
	if len(segs) == 0 {
		return 0
	}
	last := segs[len(segs)-1]
	return int64(last.gen)*MaxLogBytes + last.size
}

// readLog returns the last MaxLogBytes of dir's log and the total bytes
// ever written. A segment deleted by a rotating writer between listing and
// reading makes it start over.
func readLog(dir string) (data []byte, written int64, err error) {
	for attempt := 0; ; attempt++ {
		segs, err := listSegments(dir)
		if err != nil {
			return nil, 0, err
		}
		if len(segs) > 2 {
			segs = segs[len(segs)-2:]
		}
		var buf []byte
		retry := false
		for _, sg := range segs {
			b, err := os.ReadFile(filepath.Join(dir, segName(sg.gen)))
			if errors.Is(err, fs.ErrNotExist) && attempt < 5 {
				retry = true
				break
			}
			if err != nil {
				return nil, 0, err
			}
			buf = append(buf, b...)
		}
		if retry {
			continue
		}
		// Every segment before the first one read held exactly MaxLogBytes.
		if len(segs) > 0 {
			written = int64(segs[0].gen)*MaxLogBytes + int64(len(buf))
		}
		if len(buf) > MaxLogBytes {
			buf = buf[len(buf)-MaxLogBytes:]
		}
		return buf, written, nil
	}
}
