package remotecmd

import (
	"fmt"
	"strings"

	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// FastSyncNeeded is the exit code of the fast check when the workdir's
// fingerprint differs from the one sent: the command did not start.
const FastSyncNeeded = 82

// FastNotReady is the exit code of a fast line whose Ready check failed:
// nothing else ran.
const FastNotReady = 83

// FastParams are the inputs of FastLine.
type FastParams struct {
	// Ready, when not "", is the lease's ready check, run first (stdin
	// /dev/null, output dropped): when it fails the line prints
	// FastNotReadyLine and exits FastNotReady.
	Ready string
	// Owner, when not "", is an OwnerScript run first: its verdict lines
	// go to stderr and a non-zero exit (OwnerForeign, OwnerBusy, 97) ends
	// the line before anything else runs.
	Owner string
	// Workdir is the run's remote workdir (absolute).
	Workdir string
	// Compare: the first line of stdin is the local sync fingerprint, and
	// the command starts only when the workdir's recorded one (written by
	// the sync's finalize) is the same; otherwise the line exits
	// FastSyncNeeded. Without Compare the line is read and ignored (--no-sync).
	Compare bool
	// Hook is the sync's prepare hook (ReapLeftovers), run before the
	// comparison with $wd set, as prepare runs it before its own skip
	// check; stdin is /dev/null for it.
	Hook string
	// Nonce marks this run's verdict lines (the run ID).
	Nonce string
	// Command is the rendered command (Render) started once the checks
	// passed; its Stdin follows the fingerprint line on the same stream.
	Command Command
}

// FastMarker is the stderr line the fast check prints just before the
// command starts: everything on stdout and stderr before it is the
// protocol's (or login noise), everything after it the command's.
func FastMarker(nonce string) string { return "crabbox-fast " + nonce + " go" }

// FastSyncLine is the stderr line that comes with FastSyncNeeded.
func FastSyncLine(nonce string) string { return "crabbox-fast " + nonce + " sync" }

// FastNotReadyLine is the stderr line that comes with FastNotReady.
func FastNotReadyLine(nonce string) string { return "crabbox-fast " + nonce + " not-ready" }

// FastLine is one remote command line that folds a warm run's round trips
// into one: the owner check (with its record written), the sync's skip
// check and the command itself (issue 13, item 3). The comparison takes no
// lock, like prepare's skip check: a fingerprint is only ever written by
// a finalize of the current generation, with no receiver running. stdin
// is read only as far as the fingerprint line until the verdict, so a
// caller that holds back the command's own input until FastMarker loses
// none of it when the answer is "sync needed".
func FastLine(p FastParams) string {
	var b strings.Builder
	if p.Ready != "" {
		fmt.Fprintf(&b, "( %s\n) </dev/null >/dev/null 2>&1 || { printf '%%s\\n' %s >&2; exit %d; }; ", p.Ready, sshx.Quote(FastNotReadyLine(p.Nonce)), FastNotReady)
	}
	if p.Owner != "" {
		// The owner script ends with exit: a subshell keeps this line going.
		fmt.Fprintf(&b, "( %s\n) </dev/null >&2 || exit $?; ", p.Owner)
	}
	compare := "0"
	if p.Compare {
		compare = "1"
	}
	// A subshell, not a new bash: one program fewer on the warm path.
	fmt.Fprintf(&b, "( set -- %s\n%s) || exit $?; ",
		sshx.QuoteArgs([]string{p.Workdir, compare, p.Hook, FastMarker(p.Nonce), FastSyncLine(p.Nonce)}), fastCheck)
	b.WriteString(p.Command.Line)
	return b.String()
}

// fastCheck: $1 workdir, $2 compare (1/0), $3 hook, $4 the go marker, $5
// the sync-needed line. Reads one line (the fingerprint) from stdin.
const fastCheck = `set -u
wd=$1 meta=$1/.crabbox/sync
if [ -n "${3:-}" ]; then eval "$3" </dev/null; fi
newfp=
IFS= read -r newfp || { echo "crabbox fast check: no fingerprint line on stdin" >&2; exit 2; }
if [ "$2" = 1 ]; then
  oldfp=
  if [ -n "$newfp" ] && [ -f "$meta/manifest" ] && [ -f "$meta/fingerprint" ]; then
    IFS= read -r oldfp < "$meta/fingerprint" || true
  fi
  if [ -z "$oldfp" ] || [ "$oldfp" != "$newfp" ]; then
    printf '%s\n' "$5" >&2
    exit 82
  fi
fi
printf '%s\n' "$4" >&2
`
