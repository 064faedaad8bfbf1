package artifacts

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/fsx"
	"github.com/crabbox-dev/crabbox/internal/remotecmd"
	"github.com/crabbox-dev/crabbox/internal/runs"
)

// Defaults of the bounds (artifacts.maxFiles, artifacts.maxBytes).
const (
	DefaultMaxFiles       = 1000
	DefaultMaxBytes int64 = 1 << 30
)

// Stream limits on what the workspace may send besides file contents.
const (
	maxNoise  = 1 << 20 // profile output before the marker
	maxField  = 64 << 10
	maxNotes  = 10000
	keptNotes = 50
	maxDrain  = 1 << 20 // tar padding after its end
)

// Remote runs one command on the workspace (an *sshx.Session).
type Remote interface {
	Run(ctx context.Context, remote string, stdin io.Reader, stdout, stderr io.Writer) (int, error)
}

// Request is one transfer.
type Request struct {
	Workdir string   // the remote workdir
	Globs   []string // checked with CheckGlob
	Require []string // checked with CheckGlob; also collected
	// Downloads are written only when every Require pattern matched; their
	// Local paths must be absolute.
	Downloads []Download
	MaxFiles  int
	MaxBytes  int64
	// Dir receives the artifacts (made 0700; it must not exist yet or be
	// empty).
	Dir string
}

// Note is a match the workspace refused or skipped.
type Note struct {
	Kind   string // outside, meta, notfile, dangling, unreadable, changed, missing
	Path   string
	Detail string
}

func (n Note) String() string {
	p := runs.Escape(n.Path)
	switch n.Kind {
	case "outside":
		return fmt.Sprintf("%s resolves outside the workdir (%s); refused", p, runs.Escape(n.Detail))
	case "meta":
		return fmt.Sprintf("%s is in crabbox's %s directory; refused", p, MetaDir)
	case "notfile":
		return fmt.Sprintf("%s is not a regular file; skipped", p)
	case "dangling":
		return fmt.Sprintf("%s is a dangling symlink; skipped", p)
	case "unreadable":
		return fmt.Sprintf("%s cannot be read; skipped", p)
	case "changed":
		return fmt.Sprintf("%s changed while it was sent; not kept", p)
	case "missing":
		return fmt.Sprintf("%s was listed but never arrived; not kept", p)
	}
	return fmt.Sprintf("%s: %s %s", p, runs.Escape(n.Kind), runs.Escape(n.Detail))
}

// DownloadResult is what became of one download.
type DownloadResult struct {
	Download
	Path   string // the local file written
	Size   int64
	SHA256 string
	// Err says why nothing was written ("" when it was).
	Err string
}

// Result is what a transfer did.
type Result struct {
	Artifacts []runs.Artifact
	// Matched regular files; Skipped of them left out by the bounds
	// (SkippedBytes their size).
	Matched, Skipped int
	SkippedBytes     int64
	// RequireCounts is, per Require pattern, how many regular files inside
	// the workdir it matched.
	RequireCounts []int
	Downloads     []DownloadResult
	Notes         []Note
	MoreNotes     int // notes not kept
	Bytes         int64
	// Warnings are the workspace's complaints (tar's stderr) when it
	// exited non-zero.
	Warnings []string
}

// MissingRequired lists the Require patterns that matched nothing.
func (r Result) MissingRequired(require []string) []string {
	var out []string
	for i, g := range require {
		if i >= len(r.RequireCounts) || r.RequireCounts[i] == 0 {
			out = append(out, g)
		}
	}
	return out
}

// Fetch runs the transfer: one remote command over sess, its stdout read
// as it arrives. Artifacts land in req.Dir, downloads at their local
// paths (each written to a temp file beside it and renamed). The Result
// holds what was written even when the error is not nil. Errors carry
// exit code 7 (transport, or a workspace that broke the protocol); a
// cancelled ctx returns ctx's error.
func Fetch(ctx context.Context, sess Remote, req Request) (Result, error) {
	marker := "CRABBOX-ARTIFACTS-1-" + nonce()
	dls := make([]string, len(req.Downloads))
	for i, d := range req.Downloads {
		dls[i] = d.Remote
		if !filepath.IsAbs(d.Local) {
			return Result{}, fmt.Errorf("download %s: local path is not absolute", d.Local)
		}
	}
	script := remotecmd.ArtifactScript(remotecmd.ArtifactParams{
		Workdir: req.Workdir, Globs: req.Globs, Require: req.Require, Downloads: dls,
		MaxFiles: req.MaxFiles, MaxBytes: req.MaxBytes, Marker: marker,
	})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	rcv := &receiver{req: req, marker: marker, res: Result{RequireCounts: make([]int, len(req.Require))}}
	done := make(chan error, 1)
	go func() {
		err := rcv.read(pr)
		if err != nil {
			cancel() // stop the remote side; it has nothing more to say
		}
		pr.CloseWithError(errors.Join(err, io.ErrClosedPipe))
		done <- err
	}()
	stderr := &tailWriter{max: 8 << 10}
	code, runErr := sess.Run(rctx, remotecmd.ArtifactCommand(script), nil, pw, stderr)
	pw.Close()
	readErr := <-done
	rcv.cleanup()
	res := rcv.res
	if code > 0 && runErr == nil && stderr.Len() > 0 {
		for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				res.Warnings = append(res.Warnings, runs.Escape(l))
			}
		}
	}
	switch {
	case ctx.Err() != nil:
		return res, ctx.Err()
	case readErr != nil:
		return res, exitcode.New(exitcode.Transport, fmt.Errorf("fetching artifacts: %w", readErr))
	case runErr != nil:
		return res, exitcode.New(exitcode.Transport, fmt.Errorf("fetching artifacts: %w", runErr))
	case !rcv.ended:
		return res, exitcode.Errorf(exitcode.Transport, "fetching artifacts: the workspace's answer ended early (exit %d)%s", code, detail(stderr.String()))
	}
	return res, nil
}

func detail(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return ": " + runs.Escape(s)
}

func nonce() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// target is one local file an entry of the stream is written to.
type target struct {
	artifact string // name below req.Dir, or ""
	download int    // index into req.Downloads, or -1
}

// receiver reads the stream and writes the files.
type receiver struct {
	req    Request
	marker string
	res    Result
	ended  bool // the stream reached its end record (Z, T+tar, W, Q)

	root    *os.Root
	dirs    map[string]bool     // made below root
	want    map[string][]target // resolved path -> where it goes
	sizes   map[string]int64    // resolved path -> announced size
	order   []string            // resolved paths, first announcement order
	got     map[string]string   // resolved path -> a local file holding it
	names   map[string]bool
	dlIndex map[int]bool
	noted   map[Note]bool
}

func (rc *receiver) read(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	if err := skipToMarker(br, rc.marker); err != nil {
		return err
	}
	rc.want, rc.sizes, rc.got = map[string][]target{}, map[string]int64{}, map[string]string{}
	rc.names, rc.dlIndex = map[string]bool{}, map[int]bool{}
	var announced int64
	for {
		kind, err := field(br)
		if err != nil {
			return err
		}
		switch kind {
		case "W":
			wd, _ := field(br)
			rc.ended = true
			return fmt.Errorf("the remote workdir %s does not exist", runs.Escape(wd))
		case "Q":
			prog, _ := field(br)
			rc.ended = true
			return fmt.Errorf("the workspace has no %s (needed to send files)", runs.Escape(prog))
		case "N":
			f, err := fields(br, 3)
			if err != nil {
				return err
			}
			rc.note(Note{Kind: f[0], Path: f[1], Detail: f[2]})
			if len(rc.res.Notes)+rc.res.MoreNotes > maxNotes {
				return errors.New("the workspace sent too many notes")
			}
		case "L":
			f, err := fields(br, 4)
			if err != nil {
				return err
			}
			m, e1 := strconv.Atoi(f[0])
			sk, e2 := strconv.Atoi(f[2])
			skb, e3 := strconv.ParseInt(f[3], 10, 64)
			if e1 != nil || e2 != nil || e3 != nil || m < 0 || sk < 0 || skb < 0 {
				return errors.New("bad match counts from the workspace")
			}
			rc.res.Matched, rc.res.Skipped, rc.res.SkippedBytes = m, sk, skb
		case "M":
			f, err := fields(br, 2)
			if err != nil {
				return err
			}
			i, e1 := strconv.Atoi(f[0])
			n, e2 := strconv.Atoi(f[1])
			if e1 != nil || e2 != nil || i < 0 || i >= len(rc.req.Require) || n < 0 {
				return errors.New("bad require count from the workspace")
			}
			rc.res.RequireCounts[i] = n
		case "A":
			f, err := fields(br, 3)
			if err != nil {
				return err
			}
			name, real := f[0], f[1]
			size, err := strconv.ParseInt(f[2], 10, 64)
			switch {
			case err != nil || size < 0:
				return fmt.Errorf("bad size for %s", runs.Escape(name))
			case !validName(name) || !validName(real):
				return fmt.Errorf("the workspace sent an unsafe artifact name %q", name)
			case rc.names[name]:
				return fmt.Errorf("the workspace sent %s twice", runs.Escape(name))
			case len(rc.names) >= rc.req.MaxFiles:
				return fmt.Errorf("the workspace sent more than %d artifacts (artifacts.maxFiles)", rc.req.MaxFiles)
			case announced+size > rc.req.MaxBytes:
				return fmt.Errorf("the workspace sent more than %d bytes of artifacts (artifacts.maxBytes)", rc.req.MaxBytes)
			}
			announced += size
			rc.names[name] = true
			if err := rc.expect(real, size, target{artifact: name, download: -1}); err != nil {
				return err
			}
		case "X", "D":
			f, err := fields(br, 3)
			if err != nil {
				return err
			}
			i, err := strconv.Atoi(f[0])
			if err != nil || i < 0 || i >= len(rc.req.Downloads) || rc.dlIndex[i] {
				return errors.New("bad download index from the workspace")
			}
			if len(rc.req.Require) > 0 && len(rc.res.MissingRequired(rc.req.Require)) > 0 {
				return errors.New("the workspace sent a download although a required artifact is missing")
			}
			rc.dlIndex[i] = true
			d := rc.req.Downloads[i]
			if kind == "X" {
				rc.res.Downloads = append(rc.res.Downloads, DownloadResult{Download: d, Err: downloadReason(d, f[1], f[2], rc.req.MaxBytes)})
				continue
			}
			size, err := strconv.ParseInt(f[2], 10, 64)
			switch {
			case err != nil || size < 0 || size > rc.req.MaxBytes:
				return fmt.Errorf("bad size for download %s", runs.Escape(d.Remote))
			case !validName(f[1]):
				return fmt.Errorf("the workspace sent an unsafe path for download %s", runs.Escape(d.Remote))
			}
			if err := rc.expect(f[1], size, target{download: i}); err != nil {
				return err
			}
		case "Z":
			rc.ended = true
			rc.finishMissing()
			return nil
		case "T":
			err := rc.readTar(br)
			rc.finishMissing()
			if err == nil {
				rc.ended = true
				_, _ = io.CopyN(io.Discard, br, maxDrain)
			}
			return err
		default:
			return fmt.Errorf("unexpected record %q from the workspace", kind)
		}
	}
}

func downloadReason(d Download, reason, detail string, maxBytes int64) string {
	r := runs.Escape(d.Remote)
	switch reason {
	case "missing":
		return r + " does not exist on the workspace"
	case "outside":
		return r + " resolves outside the workdir (" + runs.Escape(detail) + "); refused"
	case "meta":
		return r + " is in crabbox's " + MetaDir + " directory; refused"
	case "notfile":
		return r + " is not a regular file"
	case "unreadable":
		return r + " cannot be read"
	case "toobig":
		return fmt.Sprintf("%s is %s bytes, over artifacts.maxBytes (%d)", r, runs.Escape(detail), maxBytes)
	}
	return r + ": " + runs.Escape(reason)
}

// expect records that resolved file real (size bytes) goes to t.
func (rc *receiver) expect(real string, size int64, t target) error {
	if s, ok := rc.sizes[real]; ok && s != size {
		return fmt.Errorf("the workspace announced %s with two sizes", runs.Escape(real))
	}
	if _, ok := rc.sizes[real]; !ok {
		rc.order = append(rc.order, real)
	}
	rc.sizes[real] = size
	rc.want[real] = append(rc.want[real], t)
	return nil
}

func (rc *receiver) note(n Note) {
	if rc.noted[n] { // a file matched by two patterns is refused once
		return
	}
	if rc.noted == nil {
		rc.noted = map[Note]bool{}
	}
	rc.noted[n] = true
	if len(rc.res.Notes) < keptNotes {
		rc.res.Notes = append(rc.res.Notes, n)
		return
	}
	rc.res.MoreNotes++
}

// readTar reads the tar stream and writes every announced entry.
func (rc *receiver) readTar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the files: %w", err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		targets, ok := rc.want[name]
		if !ok {
			return fmt.Errorf("the workspace sent %s, which it never announced", runs.Escape(h.Name))
		}
		if _, dup := rc.got[name]; dup {
			return fmt.Errorf("the workspace sent %s twice", runs.Escape(name))
		}
		switch h.Typeflag {
		case tar.TypeReg:
			if h.Size != rc.sizes[name] {
				rc.drop(name, "changed")
				continue
			}
			if err := rc.write(name, targets, io.LimitReader(tr, h.Size), h.Size); err != nil {
				return err
			}
		case tar.TypeLink: // a second name of a file already sent
			held := rc.got[strings.TrimPrefix(h.Linkname, "./")]
			if held == "" {
				rc.drop(name, "notfile")
				continue
			}
			if err := rc.copyFrom(held, name, targets); err != nil {
				return err
			}
		default:
			rc.drop(name, "notfile")
		}
	}
}

// drop notes that resolved file name was not kept (kind: changed,
// notfile) under each of its artifact names.
func (rc *receiver) drop(name, kind string) {
	for _, t := range rc.want[name] {
		if t.artifact != "" {
			rc.note(Note{Kind: kind, Path: t.artifact})
		}
	}
	rc.got[name] = ""
}

// copyFrom writes the targets of name from a local copy of the same file.
func (rc *receiver) copyFrom(held, name string, targets []target) error {
	f, err := os.Open(held)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != rc.sizes[name] {
		rc.drop(name, "changed")
		return nil
	}
	return rc.write(name, targets, io.LimitReader(f, fi.Size()), fi.Size())
}

// write copies size bytes to every target of resolved file name:
// artifacts straight into the artifacts dir, downloads through an
// fsx.AtomicFile beside their local path (renamed over it when complete).
func (rc *receiver) write(name string, targets []target, src io.Reader, size int64) error {
	type out struct {
		f  *os.File
		t  target
		af *fsx.AtomicFile // downloads
	}
	var outs []out
	abort := func() {
		for _, o := range outs {
			if o.af != nil {
				o.af.Abort()
			} else {
				// A partial artifact is not kept: it would sit in
				// the run's dir unlisted, with the wrong content.
				o.f.Close()
				_ = rc.root.Remove(o.t.artifact)
			}
		}
	}
	for _, t := range targets {
		if t.artifact != "" {
			f, err := rc.createArtifact(t.artifact)
			if err != nil {
				abort()
				return err
			}
			outs = append(outs, out{f: f, t: t})
			continue
		}
		d := rc.req.Downloads[t.download]
		if err := os.MkdirAll(filepath.Dir(d.Local), fsx.PrivateDirMode); err != nil {
			abort()
			return fmt.Errorf("download %s: %w", d.Local, err)
		}
		af, err := fsx.CreateAtomic(d.Local, 0o600)
		if err != nil {
			abort()
			return fmt.Errorf("download %s: %w", d.Local, err)
		}
		outs = append(outs, out{f: af.File, t: t, af: af})
	}
	h := sha256.New()
	ws := []io.Writer{h}
	for _, o := range outs {
		ws = append(ws, o.f)
	}
	n, err := io.Copy(io.MultiWriter(ws...), src)
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		abort()
		return fmt.Errorf("receiving %s: %w", runs.Escape(name), err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	rc.res.Bytes += n
	for _, o := range outs {
		if o.t.artifact != "" {
			// Not fsynced: one fsync per file made 1000 small files take
			// seconds, and --extract checks every SHA-256 anyway.
			if err := o.f.Close(); err != nil {
				abort()
				return fmt.Errorf("artifact %s: %w", runs.Escape(o.t.artifact), err)
			}
			rc.res.Artifacts = append(rc.res.Artifacts, runs.Artifact{Path: o.t.artifact, Size: n, SHA256: sum})
			if rc.got[name] == "" {
				rc.got[name] = filepath.Join(rc.req.Dir, filepath.FromSlash(o.t.artifact))
			}
			continue
		}
		d := rc.req.Downloads[o.t.download]
		if _, err := o.af.Commit(); err != nil {
			rc.res.Downloads = append(rc.res.Downloads, DownloadResult{Download: d, Err: fmt.Sprintf("writing %s: %v", d.Local, err)})
			continue
		}
		rc.res.Downloads = append(rc.res.Downloads, DownloadResult{Download: d, Path: d.Local, Size: n, SHA256: sum})
		if rc.got[name] == "" {
			rc.got[name] = d.Local
		}
	}
	if _, ok := rc.got[name]; !ok {
		rc.got[name] = ""
	}
	return nil
}

// createArtifact opens a new file for artifact name below req.Dir: 0600,
// its directories 0700, never through a symlink (os.Root).
func (rc *receiver) createArtifact(name string) (*os.File, error) {
	if rc.root == nil {
		if err := fsx.EnsurePrivateDir(rc.req.Dir); err != nil {
			return nil, fmt.Errorf("artifacts dir: %w", err)
		}
		root, err := os.OpenRoot(rc.req.Dir)
		if err != nil {
			return nil, fmt.Errorf("artifacts dir: %w", err)
		}
		rc.root = root
	}
	if dir := path.Dir(name); dir != "." && !rc.dirs[dir] {
		if err := rc.root.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("artifact %s: %w", runs.Escape(name), err)
		}
		if rc.dirs == nil {
			rc.dirs = map[string]bool{}
		}
		rc.dirs[dir] = true
	}
	f, err := rc.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("artifact %s: %w", runs.Escape(name), err)
	}
	return f, nil
}

// finishMissing notes every announced file that never arrived.
func (rc *receiver) finishMissing() {
	for _, real := range rc.order {
		if _, ok := rc.got[real]; ok {
			continue
		}
		for _, t := range rc.want[real] {
			if t.artifact != "" {
				rc.note(Note{Kind: "missing", Path: t.artifact})
			} else {
				d := rc.req.Downloads[t.download]
				rc.res.Downloads = append(rc.res.Downloads, DownloadResult{Download: d, Err: runs.Escape(d.Remote) + " never arrived"})
			}
		}
	}
	// Downloads whose file was refused or changed in flight.
	for _, real := range rc.order {
		if held, ok := rc.got[real]; ok && held == "" {
			for _, t := range rc.want[real] {
				if t.artifact == "" && !rc.hasResult(t.download) {
					d := rc.req.Downloads[t.download]
					rc.res.Downloads = append(rc.res.Downloads, DownloadResult{Download: d, Err: runs.Escape(d.Remote) + " changed while it was sent, or is not a regular file"})
				}
			}
		}
	}
}

func (rc *receiver) hasResult(i int) bool {
	d := rc.req.Downloads[i]
	for _, r := range rc.res.Downloads {
		if r.Download == d {
			return true
		}
	}
	return false
}

// cleanup closes the artifacts dir (a failed write aborts its own
// download temp files).
func (rc *receiver) cleanup() {
	if rc.root != nil {
		rc.root.Close()
	}
}

// skipToMarker reads up to and including marker+NUL, skipping at most
// maxNoise bytes before it.
func skipToMarker(br *bufio.Reader, marker string) error {
	want := []byte(marker + "\x00")
	var window []byte
	for read := 0; ; read++ {
		b, err := br.ReadByte()
		if err != nil {
			if err == io.EOF {
				return errors.New("the workspace sent no answer")
			}
			return err
		}
		window = append(window, b)
		if len(window) > len(want) {
			window = window[1:]
		}
		if bytes.Equal(window, want) {
			return nil
		}
		if read > maxNoise {
			return errors.New("no answer from the workspace (only profile output)")
		}
	}
}

// field reads one NUL-terminated field (at most maxField bytes).
func field(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := br.ReadSlice(0)
		b = append(b, chunk...)
		if len(b) > maxField {
			return "", errors.New("the workspace sent an overlong field")
		}
		if err == nil {
			return string(b[:len(b)-1]), nil
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			return "", errors.New("the workspace's answer ended early")
		}
		return "", err
	}
}

func fields(br *bufio.Reader, n int) ([]string, error) {
	out := make([]string, n)
	for i := range out {
		f, err := field(br)
		if err != nil {
			return nil, err
		}
		out[i] = f
	}
	return out, nil
}

// tailWriter keeps the last max bytes written.
type tailWriter struct {
	max int
	b   []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailWriter) String() string { return string(t.b) }
func (t *tailWriter) Len() int       { return len(t.b) }
