package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// Remote is the lease's ssh tunnel (an *sshx.Session).
type Remote interface {
	// Output runs a shell command line on the machine and returns its
	// stdout; a non-zero exit is an *execx.ExitError.
	Output(ctx context.Context, remote string) ([]byte, error)
	// RSH is rsync's -e value; it carries the control socket once the
	// tunnel is open (Output opens it).
	RSH() string
	Target() lease.Target
}

// Options configure one copy.
type Options struct {
	// Workdir is the lease's remote workdir (<workRoot>/<lease>/<repo>):
	// relative remote paths resolve under it.
	Workdir string
	// Recursive copies directories (-r); without it a directory source is
	// a usage error.
	Recursive bool
	// Progress, when set, receives rsync's overall progress
	// (--info=progress2, rsync's stdout).
	Progress io.Writer
	// RSync is the local rsync program; "rsync" when empty.
	RSync string
	// Retrying, when set, hears about a copy that lost its transport and
	// is tried once more over a new tunnel.
	Retrying func(err error)
}

// closer is a Remote whose tunnel can be ended, so the next use opens a
// new one (*sshx.Session: Shutdown ends a persistent master too, where
// Close would only let it go).
type closer interface{ Shutdown() error }

// kind is what a path is.
type kind byte

const (
	missing kind = '-'
	file    kind = 'f' // a regular file or anything that is not a directory
	dir     kind = 'd'
	symlink kind = 'l' // copied as the link itself
)

// Copy carries out p: one round trip to look at the remote side (and, for
// a copy into the workdir, make the workdir), then one rsync over the
// tunnel. Where a copy lands follows cp -r: a single source onto an
// existing directory goes inside it, onto a missing name becomes that
// name; several sources go inside the destination directory. Modes and
// times are kept; symlinks are copied as links; setuid and setgid bits
// from the machine are dropped. Names are passed literally (no remote
// shell, no wildcards).
//
// Errors: usage (2) for a directory without Recursive, a name that
// cannot be copied literally or a path leaving the workdir; 1 for a
// missing source or a destination of the wrong kind; 7 when the tunnel
// failed; 6 when rsync failed otherwise.
func Copy(ctx context.Context, r execx.Runner, remote Remote, p Plan, o Options) error {
	if o.RSync == "" {
		o.RSync = "rsync"
	}
	if len(p.Sources) == 0 {
		return usagef("no source")
	}
	err := copyOnce(ctx, r, remote, p, o)
	c, ok := remote.(closer)
	if err == nil || !ok || exitcode.Code(err) != exitcode.Transport || ctx.Err() != nil {
		return err
	}
	// A copy is idempotent (rsync sends what differs), so one that lost
	// its transport is tried once more over a new tunnel; the old master
	// may be stalled rather than gone, so it is closed first.
	if o.Retrying != nil {
		o.Retrying(err)
	}
	_ = c.Shutdown()
	return copyOnce(ctx, r, remote, p, o)
}

func copyOnce(ctx context.Context, r execx.Runner, remote Remote, p Plan, o Options) error {
	if p.Push {
		return push(ctx, r, remote, p, o)
	}
	return pull(ctx, r, remote, p, o)
}

func push(ctx context.Context, r execx.Runner, remote Remote, p Plan, o Options) error {
	srcs := make([]string, len(p.Sources))
	kinds := make([]kind, len(p.Sources))
	for i, s := range p.Sources {
		srcs[i] = filepath.Clean(s)
		k, err := localKind(srcs[i], false)
		if err != nil {
			return err
		}
		if k == missing {
			return exitcode.Errorf(exitcode.Failure, "cp: %s: no such file or directory", s)
		}
		if k == dir && !o.Recursive {
			return usagef("%s is a directory (use -r)", s)
		}
		kinds[i] = k
	}
	dest, err := RemotePath(o.Workdir, p.Dest)
	if err != nil {
		return err
	}
	mkdir := ""
	if dest == o.Workdir || strings.HasPrefix(dest, o.Workdir+"/") {
		mkdir = o.Workdir // the workdir exists before any run's sync
	}
	dk, err := remoteKinds(ctx, remote, mkdir, true, []string{dest})
	if err != nil {
		return err
	}
	args, dst, err := place(srcs, kinds, dest, dk[0], p.Dest, localArg)
	if err != nil {
		return err
	}
	return runRsync(ctx, r, remote, o, false, args, remoteArg(remote.Target(), dst))
}

func pull(ctx context.Context, r execx.Runner, remote Remote, p Plan, o Options) error {
	srcs := make([]string, len(p.Sources))
	for i, s := range p.Sources {
		rp, err := RemotePath(o.Workdir, s)
		if err != nil {
			return err
		}
		if _, err := escapeGlob(rp); err != nil {
			return err
		}
		srcs[i] = rp
	}
	kinds, err := remoteKinds(ctx, remote, "", false, srcs)
	if err != nil {
		return err
	}
	for i, k := range kinds {
		if k == missing {
			return exitcode.Errorf(exitcode.Failure, "cp: %s on the lease (%s): no such file or directory", p.Sources[i], srcs[i])
		}
		if k == dir && !o.Recursive {
			return usagef("%s on the lease is a directory (use -r)", p.Sources[i])
		}
	}
	dest := filepath.Clean(p.Dest)
	dk, err := localKind(dest, true)
	if err != nil {
		return err
	}
	t := remote.Target()
	args, dst, err := place(srcs, kinds, dest, dk, p.Dest, func(s string) string {
		e, _ := escapeGlob(s) // checked above
		return remoteArg(t, e)
	})
	if err != nil {
		return err
	}
	return runRsync(ctx, r, remote, o, true, args, localArg(dst))
}

// place decides rsync's operands the cp -r way. srcs are cleaned paths
// (no trailing slash), arg renders one as an rsync operand; dest is the
// cleaned destination of kind dk (given as shown in messages). It returns
// the source operands and the destination path (a trailing slash when it
// is, or becomes, a directory).
func place(srcs []string, kinds []kind, dest string, dk kind, shown string, arg func(string) string) ([]string, string, error) {
	into := dest + "/"
	if dest == "/" {
		into = "/"
	}
	out := make([]string, len(srcs))
	if len(srcs) > 1 {
		if dk != dir && dk != missing {
			return nil, "", exitcode.Errorf(exitcode.Failure, "cp: copying several sources: %s is not a directory", shown)
		}
		for i, s := range srcs {
			out[i] = arg(s)
		}
		return out, into, nil
	}
	s := srcs[0]
	switch {
	case kinds[0] == dir && dk == dir:
		return []string{arg(s)}, into, nil // dest/<base>
	case kinds[0] == dir && dk == missing:
		return []string{arg(s) + "/"}, into, nil // dest is the copy
	case kinds[0] == dir:
		return nil, "", exitcode.Errorf(exitcode.Failure, "cp: cannot overwrite non-directory %s with directory %s", shown, s)
	case dk == dir:
		return []string{arg(s)}, into, nil
	}
	return []string{arg(s)}, dest, nil
}

// localKind is what p is here; follow decides whether a symlink counts
// as what it points to (a destination) or as itself (a source).
func localKind(p string, follow bool) (kind, error) {
	stat := os.Lstat
	if follow {
		stat = os.Stat
	}
	fi, err := stat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return missing, nil
	case err != nil:
		return 0, exitcode.Errorf(exitcode.Failure, "cp: %v", err)
	case fi.Mode()&os.ModeSymlink != 0:
		return symlink, nil
	case fi.IsDir():
		return dir, nil
	}
	return file, nil
}

// statMarker starts each line of StatScript's answer (profile noise may
// come first).
const statMarker = "crabbox-stat "

// StatScript prints one line "crabbox-stat <k>" per path, k being d
// (directory), l (symlink, only when follow is false), f (anything else
// that exists) or - (missing). With mkdir set it first makes that
// directory (exit 97 when it cannot).
func StatScript(mkdir string, follow bool, paths []string) string {
	var b strings.Builder
	if mkdir != "" {
		fmt.Fprintf(&b, "mkdir -p -- %s || exit 97; ", sshx.Quote(mkdir))
	}
	test := `if [ -L "$p" ]; then k=l; elif [ -d "$p" ]; then k=d; elif [ -e "$p" ]; then k=f; else k=-; fi`
	if follow {
		test = `if [ -d "$p" ]; then k=d; elif [ -e "$p" ] || [ -L "$p" ]; then k=f; else k=-; fi`
	}
	fmt.Fprintf(&b, `for p in %s; do %s; printf '%%s%%s\n' %s "$k"; done`, sshx.QuoteArgs(paths), test, sshx.Quote(statMarker))
	return b.String()
}

// ParseStat reads StatScript's answer for n paths.
func ParseStat(out string, n int) ([]kind, error) {
	var ks []kind
	for _, line := range strings.Split(out, "\n") {
		v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), statMarker)
		if !ok {
			continue
		}
		if len(v) != 1 || !strings.Contains("-fdl", v) {
			return nil, fmt.Errorf("unexpected answer %q", line)
		}
		ks = append(ks, kind(v[0]))
	}
	if len(ks) != n {
		return nil, fmt.Errorf("expected %d answers, got %d", n, len(ks))
	}
	return ks, nil
}

func remoteKinds(ctx context.Context, remote Remote, mkdir string, follow bool, paths []string) ([]kind, error) {
	out, err := remote.Output(ctx, StatScript(mkdir, follow, paths))
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, exitcode.New(exitcode.Interrupted, cerr)
		}
		var ee *execx.ExitError
		if errors.As(err, &ee) && ee.Code == 97 {
			return nil, exitcode.Errorf(exitcode.Failure, "cp: cannot make the workdir %s on the lease: %s", mkdir, ee.Output)
		}
		if exitcode.Code(err) != exitcode.Failure {
			return nil, err // the tunnel's own error (exit 7)
		}
		return nil, exitcode.Errorf(exitcode.Failure, "cp: looking at the remote paths: %v", err)
	}
	ks, err := ParseStat(string(out), len(paths))
	if err != nil {
		return nil, exitcode.Errorf(exitcode.Failure, "cp: looking at the remote paths: %v", err)
	}
	return ks, nil
}

// remoteArg is a remote path as an rsync operand ("user@host:path";
// an IPv6 host in brackets).
func remoteArg(t lease.Target, p string) string {
	host := t.Host
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	if t.User != "" {
		host = t.User + "@" + host
	}
	return host + ":" + p
}

// RsyncArgs is rsync's argv (without the program) for a copy: names go
// through --protect-args (no remote shell), "--" ends the options.
func RsyncArgs(rsh string, recursive, pull, progress bool, srcs []string, dst string) []string {
	args := []string{"--protect-args", "-lptz"}
	if recursive {
		args = append(args, "-r")
	}
	if pull {
		// What comes from the machine never brings setuid/setgid bits.
		args = append(args, "--chmod=ug-s")
	}
	if progress {
		args = append(args, "--info=progress2")
	}
	args = append(args, "-e", rsh, "--")
	args = append(args, srcs...)
	return append(args, dst)
}

func runRsync(ctx context.Context, r execx.Runner, remote Remote, o Options, pull bool, srcs []string, dst string) error {
	args := RsyncArgs(remote.RSH(), o.Recursive, pull, o.Progress != nil, srcs, dst)
	res, err := r.Run(ctx, execx.Cmd{Name: o.RSync, Args: args, Stdout: o.Progress})
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return exitcode.New(exitcode.Interrupted, fmt.Errorf("cp interrupted: %w", cerr))
	}
	var ee *execx.ExitError
	if errors.As(err, &ee) {
		return rsyncError(remote.Target().Host, ee.Code, string(res.Stderr))
	}
	return exitcode.Errorf(exitcode.Sync, "cp: rsync: %v; next_action=check that rsync is installed locally", err)
}

// rsyncError classifies a failed rsync: a lost transport (255, 12, 10,
// a closed connection) is exit 7, anything else 6.
func rsyncError(host string, code int, stderr string) error {
	detail := lastLines(stderr)
	low := strings.ToLower(stderr)
	switch {
	case strings.Contains(low, "rsync: command not found") || strings.Contains(low, "rsync: not found"):
		return exitcode.Errorf(exitcode.Sync, "cp: rsync is not installed on %s (exit %d): %s", host, code, detail)
	case code == 255 || code == 12 || code == 10 || strings.Contains(low, "connection unexpectedly closed") || strings.Contains(low, "broken pipe"):
		return exitcode.Errorf(exitcode.Transport, "cp: the connection to %s failed (rsync exit %d): %s; next_action=retry", host, code, detail)
	}
	return exitcode.Errorf(exitcode.Sync, "cp: rsync failed (exit %d): %s", code, detail)
}

// lastLines is the last few non-empty lines of s, joined with "; ".
func lastLines(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			keep = append(keep, l)
		}
	}
	if len(keep) > 3 {
		keep = keep[len(keep)-3:]
	}
	return strings.Join(keep, "; ")
}
