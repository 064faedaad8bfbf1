package remotecmd

import (
	"fmt"
	"path"
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
	// Compare: the line after the command's Stdin is the local sync
	// fingerprint, and the command starts only when the workdir's recorded
	// one (written by the sync's finalize) is the same; otherwise the line
	// exits FastSyncNeeded. Without Compare the line is read and ignored
	// (--no-sync).
	Compare bool
	// Hook is the sync's prepare hook (ReapLeftovers), run after the owner
	// check and before the command's files are written, with $wd set, as
	// prepare runs it before its own skip check; stdin is /dev/null for it.
	Hook string
	// Command is the command started once the checks passed (its RunID
	// marks the verdict lines).
	Command Params
}

// FastMarker is the stderr line the fast check prints just before the
// command starts: everything on stdout and stderr before it is the
// protocol's (or login noise), everything after it the command's.
func FastMarker(nonce string) string { return "crabbox-fast " + nonce + " go" }

// FastShellMarker is the stderr line printed just before the login shell
// starts: what comes after it and before FastMarker is the shell's own
// (its profile's), shown as the ordinary path shows it.
func FastShellMarker(nonce string) string { return "crabbox-fast " + nonce + " shell" }

// FastSyncLine is the stderr line that comes with FastSyncNeeded.
func FastSyncLine(nonce string) string { return "crabbox-fast " + nonce + " sync" }

// FastNotReadyLine is the stderr line that comes with FastNotReady.
func FastNotReadyLine(nonce string) string { return "crabbox-fast " + nonce + " not-ready" }

// FastLine is the command for one remote command line that folds a warm
// run's round trips into one: the owner check (with its record written),
// the sync's skip check and the command itself (issue 13, item 3). Its
// Stdin is the command's; the fingerprint line follows it on the stream,
// then the command's own input. Everything but the comparison (the ready
// and owner checks, the hook, the upload of the command's files, the
// login shell and its profile) runs while the fingerprint is still being
// computed; once it arrives only builtins run before the command starts.
// The comparison takes no lock, like prepare's skip check: a fingerprint
// is only ever written by a finalize of the current generation, with no
// receiver running. The stream is read only as far as the fingerprint
// line until the verdict, so a caller that holds back the command's own
// input until FastMarker loses none of it when the answer is "sync
// needed". On that answer, the run's files are removed again.
func FastLine(p FastParams) Command {
	q := sshx.Quote
	var b strings.Builder
	nonce := p.Command.RunID
	if p.Ready != "" {
		fmt.Fprintf(&b, "( %s\n) </dev/null >/dev/null 2>&1 || { printf '%%s\\n' %s >&2; exit %d; }; ", p.Ready, q(FastNotReadyLine(nonce)), FastNotReady)
	}
	if p.Owner != "" {
		// The owner script ends with exit: a subshell keeps this line going.
		fmt.Fprintf(&b, "( %s\n) </dev/null >&2 || exit $?; ", p.Owner)
	}
	if p.Hook != "" {
		fmt.Fprintf(&b, "( wd=%s\n%s\n) </dev/null; ", q(p.Command.Workdir), p.Hook)
	}
	// The gate runs inside the login shell: $1 is the run script.
	files := `"$1"`
	if p.Command.Items != "" {
		files += " " + q(ItemsFile(p.Command.Workdir, nonce))
	}
	var g strings.Builder
	fmt.Fprintf(&g, `newfp=; IFS= read -r newfp <&3 || { echo 'crabbox fast check: no fingerprint line on stdin' >&2; rm -f %s; exit 2; }; `, files)
	if p.Compare {
		meta := path.Join(Meta(p.Command.Workdir), "sync")
		fmt.Fprintf(&g, `oldfp=; if [ -n "$newfp" ] && [ -f %s ] && [ -f %s ]; then IFS= read -r oldfp < %s || :; fi; `,
			q(meta+"/manifest"), q(meta+"/fingerprint"), q(meta+"/fingerprint"))
		fmt.Fprintf(&g, `if [ -z "$oldfp" ] || [ "$oldfp" != "$newfp" ]; then rm -f %s; printf '%%s\n' %s >&2; exit %d; fi; `,
			files, q(FastSyncLine(nonce)), FastSyncNeeded)
	}
	fmt.Fprintf(&g, `printf '%%s\n' %s >&2; `, q(FastMarker(nonce)))
	cp := p.Command
	cp.gate = g.String()
	c := Render(cp)
	fmt.Fprintf(&b, "printf '%%s\\n' %s >&2; ", q(FastShellMarker(nonce)))
	c.Line = b.String() + c.Line
	return c
}
