package sshhost

import (
	"context"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/remotecmd"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// Exit codes of the prelude every owner round trip starts with.
const (
	// exitWorkRoot: the work root is not a directory this user may write.
	exitWorkRoot = 96
	// exitOwnerLock: the host's owner lock stayed taken for lockWait.
	exitOwnerLock = 95
)

// lockWait is how long a round trip waits for the host's owner lock, in
// seconds (another crabbox on the same host holding it for one script).
const lockWait = "30"

// LockFile is the host's owner lock, in the work root: every owner round
// trip of the ssh provider holds it (flock(1), where the host has it), so
// two machines claiming the same host at once cannot both win.
const LockFile = ".crabbox-owner.lock"

// ReadyCheck is the lease's ready check: the work root exists (made
// 0700 when new) and this user may write it.
func ReadyCheck(workRoot string) string {
	q := sshx.Quote(workRoot)
	return "umask 077 && mkdir -p " + q + " && test -d " + q + " && test -w " + q + " && test -x " + q
}

// prelude makes the work root (0700 when new), refuses one this user
// cannot write (exitWorkRoot) and takes the host's owner lock for the rest
// of the script.
func prelude(workRoot string) string {
	return fmt.Sprintf(`umask 077
root=%s
if ! mkdir -p "$root" 2>/dev/null || ! [ -d "$root" ] || ! [ -w "$root" ] || ! [ -x "$root" ]; then
  echo "crabbox: $root is not a directory $(id -un 2>/dev/null) may write" >&2; exit %d
fi
if command -v flock >/dev/null 2>&1; then
  exec 9>>"$root/%s" || exit %d
  flock -w %s 9 || { echo "crabbox: the owner lock $root/%s stayed taken for %ss" >&2; exit %d; }
fi
`, sshx.Quote(workRoot), exitWorkRoot, LockFile, exitOwnerLock, lockWait, LockFile, lockWait, exitOwnerLock)
}

// hostRemote runs scripts on a lease's host: each one after the prelude,
// in one round trip, with the prelude's failures turned into clear errors.
// It is the owner.Remote the owner checks use.
type hostRemote struct {
	s *sshx.Session
	l *Lease
}

// Run runs the prelude and then script (one ssh round trip). A refused
// host key is the sshx.HostKeyError Session returns (exit 7).
func (r *hostRemote) Run(ctx context.Context, script string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	var errb strings.Builder
	w := io.Writer(&errb)
	if stderr != nil {
		w = io.MultiWriter(stderr, &errb)
	}
	code, err := r.s.Run(ctx, prelude(r.l.Target.WorkRoot)+script, stdin, stdout, w)
	if err != nil {
		return code, err
	}
	switch code {
	case exitWorkRoot:
		return code, exitcode.Errorf(exitcode.Usage,
			"work root %s on host %s is not usable (%s); set the host's workRoot in ssh.hosts, or ssh.workRoot / --ssh-work-root, to a directory %s may write",
			r.l.Target.WorkRoot, r.l.Workspace, execx.FirstLine(errb.String()), userOr(r.l.Target.User))
	case exitOwnerLock:
		return code, exitcode.Errorf(exitcode.Transport, "host %s: %s; another crabbox is claiming or releasing it, retry", r.l.Workspace, execx.FirstLine(errb.String()))
	}
	return code, nil
}

func userOr(u string) string {
	if u == "" {
		return "the ssh user"
	}
	return u
}

// releaseScript drops this machine's owner record of leaseID and, with
// clean, the lease's work dir <root>/<leaseID>. A record another machine
// wrote is left alone, and so is the work dir then. It prints
// `crabbox-owner owner <machine> <lease> <createdAt>` for the record found
// and `crabbox-release <what>` lines for what it did.
func releaseScript(workRoot, machineID, leaseID string, clean bool) string {
	q := sshx.Quote
	c := "0"
	if clean && lease.IsLeaseID(leaseID) { // a work dir is only ever named by a real lease ID
		c = "1"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "f=%s; me=%s; lease=%s; wd=%s; clean=%s\n",
		q(path.Join(workRoot, remotecmd.OwnerFile)), q(machineID), q(leaseID), q(path.Join(workRoot, leaseID)), c)
	b.WriteString(`old=$(head -c 4096 "$f" 2>/dev/null)
field() { printf '%s\n' "$old" | sed -n "s/.*\"$1\":\"\([A-Za-z0-9_.:+-]*\)\".*/\1/p" | head -n 1; }
om=$(field machineId); ol=$(field leaseId); oc=$(field createdAt)
echo "crabbox-owner owner ${om:--} ${ol:--} ${oc:--}"
if [ -n "$om" ] && [ "$om" != "$me" ]; then echo "crabbox-release foreign"; exit 0; fi
if [ -n "$om" ] && { [ "$ol" = "$lease" ] || [ -z "$ol" ]; }; then
  rm -f "$f" || exit 98 # (cannot remove)
  echo "crabbox-release owner"
fi
if [ "$clean" = 1 ] && [ -d "$wd" ] && ! [ -L "$wd" ]; then
  rm -rf "$wd" || exit 98
  echo "crabbox-release workdir"
fi
exit 0
`)
	return b.String()
}

// releaseOutcome is what releaseScript reported.
type releaseOutcome struct {
	record         remotecmd.OwnerRecord
	foreign        bool
	ownerDropped   bool
	workdirRemoved bool
}

func parseRelease(out string) releaseOutcome {
	var o releaseOutcome
	o.record, _ = remotecmd.ParseOwner(out)
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || f[0] != "crabbox-release" {
			continue
		}
		switch f[1] {
		case "foreign":
			o.foreign = true
		case "owner":
			o.ownerDropped = true
		case "workdir":
			o.workdirRemoved = true
		}
	}
	return o
}

// doctorTools are the programs a host needs (sync, seeding, commands).
var doctorTools = []string{"sh", "bash", "git", "rsync", "tar"}

// doctorScript checks tools and the work root without changing anything:
// it prints `crabbox-doctor missing <tool>` per missing tool and
// `crabbox-doctor workroot <ok|creatable|unwritable>`.
func doctorScript(workRoot string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "root=%s\n", sshx.Quote(workRoot))
	b.WriteString("for t in " + strings.Join(doctorTools, " ") + `; do command -v "$t" >/dev/null 2>&1 || echo "crabbox-doctor missing $t"; done
if [ -d "$root" ]; then
  if [ -w "$root" ] && [ -x "$root" ]; then echo "crabbox-doctor workroot ok"; else echo "crabbox-doctor workroot unwritable"; fi
else
  d=$root; while [ ! -d "$d" ]; do d=${d%/*}; [ -n "$d" ] || d=/; done
  if [ -w "$d" ] && [ -x "$d" ]; then echo "crabbox-doctor workroot creatable"; else echo "crabbox-doctor workroot unwritable"; fi
fi
exit 0
`)
	return b.String()
}

func parseDoctor(out string) (missing []string, workRoot string) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "crabbox-doctor" {
			continue
		}
		switch f[1] {
		case "missing":
			missing = append(missing, f[2])
		case "workroot":
			workRoot = f[2]
		}
	}
	return missing, workRoot
}
