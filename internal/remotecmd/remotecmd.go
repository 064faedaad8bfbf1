// Package remotecmd renders the shell text crabbox runs on a workspace for
// one run: the wrapper that starts the user's command in its own process
// group, and the small scripts that stop it, reap what a killed crabbox
// left running, and tell a command's own exit 255 from a dropped tunnel.
//
// Everything variable (paths, argv, env values) is either single-quoted
// with sshx.Quote or sent on stdin; nothing is interpolated unquoted.
package remotecmd

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// KillGrace is how long an interrupted remote command gets after TERM.
const KillGrace = 2 * time.Second

// Params describe one run's remote command.
type Params struct {
	Workdir string   // remote repository workdir (absolute)
	Subdir  string   // directory under Workdir to run in ("" = Workdir); slash-separated, relative
	RunID   string   // run_<hex>
	Argv    []string // the user's command
	// Shell runs the words joined by spaces as a bash script; otherwise
	// each word is one literal argv element.
	Shell bool
	// ResultsAuto leaves a start marker so JUnit files written by the
	// command can be found by age.
	ResultsAuto bool
	// Env is the rendered env file (envfwd.Render); sent on stdin only.
	Env string
	// ForwardStdin gives the command the rest of the ssh session's stdin
	// (what follows Command.Stdin, EOF included); otherwise its stdin is
	// /dev/null.
	ForwardStdin bool
	// UserScript, when set, is the user's own script (--script,
	// --script-stdin): it is uploaded under .crabbox/scripts/ and run with
	// Argv as its arguments ($1…); Shell is then ignored.
	UserScript *UserScript
	// Items, when non-empty, is written to ItemsFile (0600) before the
	// command starts and removed when it ends: a shard's items, one per
	// line (run --shards; CRABBOX_SHARD_ITEMS names the file).
	Items string

	// gate is FastLine's check, run in the login shell once the env file
	// is sourced and removed, before the command starts ($1 is the run
	// script). With a gate the stream after Stdin stays on fd 3 whatever
	// ForwardStdin says: the gate reads its line from there.
	gate string
}

// ItemsFile is where Params.Items is written for run runID.
func ItemsFile(workdir, runID string) string {
	return path.Join(Meta(workdir), "runs", runID+".items")
}

// UserScript is a script file's content to upload and run.
type UserScript struct {
	Body string
}

// Command is a rendered remote command.
type Command struct {
	// Line is the remote command line handed to ssh. It is short and
	// fixed-size whatever the argv: the argv and the env travel on Stdin,
	// so no OS argument limit applies to the user's command line.
	Line string
	// Stdin must be the ssh command's stdin: the env file, the command
	// script, then the user's script (with UserScript), each read with
	// `head -c` of its exact length. With ForwardStdin the command's own
	// input follows it on the same stream.
	Stdin string
	// ScriptFile is the uploaded user script ("" without UserScript):
	// .crabbox/scripts/<content hash>.sh under the workdir.
	ScriptFile string
	// PIDFile holds the process group ID while the command runs.
	PIDFile string
	// ExitFile is written only when the command itself exits 255 (ssh's own
	// failure code), so a caller that sees ssh exit 255 can ask whether the
	// command really ended with it (ExitStatusScript).
	ExitFile string
	// Dir is the remote directory the command runs in.
	Dir string
}

// Meta is the run metadata dir under a workdir.
func Meta(workdir string) string { return path.Join(workdir, ".crabbox") }

// NeedsShell reports whether argv is a single word holding whitespace or
// any of & | ; < > * $ ( ) or a backtick, i.e. a shell script meant for
// bash rather than a program name (so `crabbox run -- "pnpm i && pnpm test"`
// runs the script; Params.Shell).
func NeedsShell(argv []string) bool {
	if len(argv) != 1 {
		return false
	}
	return strings.IndexFunc(argv[0], unicode.IsSpace) >= 0 || strings.ContainsAny(argv[0], "&|;<>*$()`")
}

// Script is the bash script that runs the user's command: `exec` of the
// quoted argv words, or the joined words themselves with Shell.
func Script(argv []string, shell bool) string {
	if shell {
		return strings.Join(argv, " ") + "\n"
	}
	return "exec " + sshx.QuoteArgs(argv) + "\n"
}

// ScriptFor is the run script that starts an uploaded user script at
// file with args: `exec` of the file itself when it starts with a shebang
// (it is made executable), else `exec bash <file> <args>`.
func ScriptFor(file string, body string, args []string) string {
	cmd := "exec bash " + sshx.Quote(file)
	if strings.HasPrefix(body, "#!") {
		cmd = "exec " + sshx.Quote(file)
	}
	if len(args) > 0 {
		cmd += " " + sshx.QuoteArgs(args)
	}
	return cmd + "\n"
}

// ScriptsDir is where user scripts are uploaded under a workdir.
func ScriptsDir(workdir string) string { return path.Join(Meta(workdir), "scripts") }

// Render builds the remote command for p. On the workspace it:
//
//   - creates the workdir and .crabbox/{env,runs} (and .crabbox/scripts
//     with a UserScript; exit 97 when it cannot);
//   - reads the env file and the command script from stdin into 0600 files
//     (umask 077), and a user script into .crabbox/scripts/<hash>.sh
//     (through a temporary name, so a process still running an older copy
//     keeps its file);
//   - with ForwardStdin, keeps the rest of its stdin on fd 3 for the
//     command and gives the login shell /dev/null, so a profile cannot
//     consume the command's input;
//   - in a login bash, sources the env file after the profile (so forwarded
//     variables win) and removes it, then starts `bash <script>` with stdin
//     /dev/null (or fd 3 with ForwardStdin) in its own process group
//     (set -m), records the group in the pid file, waits, removes the pid
//     and script files, writes the exit file when the code is 255, and
//     exits with the command's code.
func Render(p Params) Command {
	meta := Meta(p.Workdir)
	envFile := path.Join(meta, "env", p.RunID+".env")
	runs := path.Join(meta, "runs")
	c := Command{
		PIDFile:  path.Join(runs, p.RunID+".pid"),
		ExitFile: path.Join(runs, p.RunID+".exit"),
		Dir:      p.Workdir,
	}
	if p.Subdir != "" && p.Subdir != "." {
		c.Dir = path.Join(p.Workdir, p.Subdir)
	}
	script := Script(p.Argv, p.Shell)
	var user string
	if p.UserScript != nil {
		user = p.UserScript.Body
		sum := sha256.Sum256([]byte(user))
		c.ScriptFile = path.Join(ScriptsDir(p.Workdir), hex.EncodeToString(sum[:8])+".sh")
		script = ScriptFor(c.ScriptFile, user, p.Argv)
	}
	scriptFile := path.Join(runs, p.RunID+".sh")
	c.Stdin = p.Env + script + user + p.Items
	q := sshx.Quote
	var b strings.Builder
	dirList := []string{p.Workdir, path.Join(meta, "env"), runs}
	if c.ScriptFile != "" {
		dirList = append(dirList, ScriptsDir(p.Workdir))
	}
	// mkdir only runs when a directory is missing (a warm workdir has them).
	var have []string
	for _, d := range dirList {
		have = append(have, "[ -d "+q(d)+" ]")
	}
	fmt.Fprintf(&b, "{ %s; } || mkdir -p %s || exit 97; ", strings.Join(have, " && "), sshx.QuoteArgs(dirList))
	upload := fmt.Sprintf("head -c %d > %s && head -c %d > %s", len(p.Env), q(envFile), len(script), q(scriptFile))
	cleanup := q(envFile) + " " + q(scriptFile)
	if c.ScriptFile != "" {
		tmp := path.Join(ScriptsDir(p.Workdir), p.RunID+".tmp")
		upload += fmt.Sprintf(" && head -c %d > %s", len(user), q(tmp))
		if strings.HasPrefix(user, "#!") {
			upload += " && chmod 700 " + q(tmp)
		}
		upload += fmt.Sprintf(" && mv -f %s %s", q(tmp), q(c.ScriptFile))
		cleanup += " " + q(tmp)
	}
	done := q(c.PIDFile) // removed with the script when the command ends
	if p.Items != "" {
		items := ItemsFile(p.Workdir, p.RunID)
		upload += fmt.Sprintf(" && head -c %d > %s", len(p.Items), q(items))
		cleanup += " " + q(items)
		done += " " + q(items)
	}
	fmt.Fprintf(&b, "(umask 077 && %s) || { rm -f %s; exit 97; }; ", upload, cleanup)
	if p.ResultsAuto {
		fmt.Fprintf(&b, "touch %s; ", q(path.Join(runs, p.RunID+".start")))
	}
	// The command's input: /dev/null, or the rest of this stream, kept on
	// fd 3 past the login shell's profile (which reads /dev/null).
	stdin := "</dev/null"
	switch {
	case p.ForwardStdin:
		b.WriteString("exec 3<&0 </dev/null; ")
		stdin = "<&3 3<&-"
	case p.gate != "":
		b.WriteString("exec 3<&0 </dev/null; ")
		stdin = "</dev/null 3<&-"
	}
	// The env file is sourced inside the login shell, after its profile,
	// so a forwarded variable (PATH included) is what the command sees.
	inner := fmt.Sprintf(`. "$2"; rm -f "$2"; %sset -m; cd %s || { printf 'crabbox: cannot enter %%s on the workspace\n' %s >&2; rm -f "$1"; exit 97; }; bash "$1" %s & p=$!; set +m; echo $p > %s; wait $p; rc=$?; rm -f %s "$1"; if [ $rc -eq 255 ]; then echo 255 > %s; fi; exit $rc`,
		p.gate, q(c.Dir), q(c.Dir), stdin, q(c.PIDFile), done, q(c.ExitFile))
	fmt.Fprintf(&b, "exec bash -lc %s bash %s %s", q(inner), q(scriptFile), q(envFile))
	c.Line = b.String()
	return c
}

// ExitStatusScript prints the exit code recorded in exitFile and removes
// it, or prints "none" when the command wrote no exit file.
func ExitStatusScript(exitFile string) string {
	q := sshx.Quote(exitFile)
	return fmt.Sprintf(`if [ -f %s ]; then cat %s; rm -f %s; else echo none; fi`, q, q, q)
}

// ParseExitStatus reads ExitStatusScript's answer: the code and whether the
// command wrote one.
func ParseExitStatus(out string) (int, bool) {
	fields := strings.Fields(out)
	if len(fields) == 0 {
		return 0, false
	}
	n, err := strconv.Atoi(fields[len(fields)-1]) // profile noise may come first
	if err != nil || n < 0 || n > 255 {
		return 0, false
	}
	return n, true
}

// KillScript stops the process group recorded in pidFile: TERM, then KILL
// after KillGrace, then waits (up to 2 s) until the group is gone, so the
// caller's next step never races a dying process.
func KillScript(pidFile string) string {
	q := sshx.Quote(pidFile)
	return fmt.Sprintf(`p=$(cat %s 2>/dev/null) || exit 0; kill -TERM -- -"$p" 2>/dev/null; for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 -- -"$p" 2>/dev/null || break; sleep 0.%d; done; kill -KILL -- -"$p" 2>/dev/null; for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do kill -0 -- -"$p" 2>/dev/null || break; sleep 0.1; done; rm -f %s; true`,
		q, int(KillGrace/time.Second), q)
}

// ReapLeftovers runs at the top of the sync's prepare step, under the lease
// lock, with $wd set to the workdir: any run pid file still in the workdir
// belongs to a crabbox that died without stopping its command (SIGKILL,
// power loss). Its process group is stopped before the tree is changed, but
// only if the group leader really is that run (its environment carries
// CRABBOX_RUN_ID=<run>), so a reused PID is never signalled. Exit files
// and scripts of finished runs are removed, and so is a user script's
// upload a killed run left half-written. Nothing is started for a workdir
// with none of these (the warm path's usual case).
const ReapLeftovers = `for f in "$wd"/.crabbox/runs/run_*.pid; do
  [ -f "$f" ] || continue
  id=$(basename "$f" .pid); p=$(cat "$f" 2>/dev/null)
  case $p in ''|*[!0-9]*) rm -f "$f"; continue ;; esac
  if [ -r /proc/$p/environ ] && tr '\0' '\n' < /proc/$p/environ | grep -qx "CRABBOX_RUN_ID=$id"; then
    kill -TERM -- -"$p" 2>/dev/null; sleep 0.5; kill -KILL -- -"$p" 2>/dev/null
    echo "` + HookNotePrefix + `stopped the command left running by run $id" >&2
  fi
  rm -f "$f"
done
for f in "$wd"/.crabbox/runs/run_*.exit "$wd"/.crabbox/runs/run_*.sh "$wd"/.crabbox/scripts/run_*.tmp; do
  if [ -e "$f" ] || [ -L "$f" ]; then rm -f "$f"; fi
done
true`

// HookNotePrefix starts a line of a sync prepare hook's stderr (such as
// ReapLeftovers') that is for the user.
const HookNotePrefix = "crabbox: "

// HookNotes are the messages (prefix removed) of the HookNotePrefix lines
// in a hook's stderr.
func HookNotes(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if n, ok := strings.CutPrefix(strings.TrimSpace(l), HookNotePrefix); ok && n != "" {
			out = append(out, n)
		}
	}
	return out
}

// MaxReportBytes caps one collected JUnit file.
const MaxReportBytes = 16 << 20

// JUnitScript prints each JUnit file as `<name>\0<size>\0<bytes>`: the
// files matching the patterns (relative to dir, globbing allowed), and with
// auto the junit*.xml, TEST-*.xml and results.xml files written since the
// run's start marker. Every file is resolved on the workspace
// (realpath -e) and skipped, with a line on stderr, unless it is a regular
// file inside workdir: a report that is a symlink out of the workdir
// (report.xml -> /etc/passwd) is never read.
func JUnitScript(workdir, dir, runID string, patterns []string, auto bool) string {
	q := sshx.Quote
	var b strings.Builder
	fmt.Fprintf(&b, "root=$(realpath -e -- %s) || exit 0; cd -- %s || exit 0; ", q(workdir), q(dir))
	b.WriteString(`emit() { r=$(realpath -e -- "$1" 2>/dev/null) || return 0; ` +
		`case $r in "$root"/*) ;; *) printf 'crabbox: %s resolves outside the workdir (%s); skipped\n' "$1" "$r" >&2; return 0 ;; esac; ` +
		`[ -f "$r" ] || return 0; ` +
		fmt.Sprintf(`printf '%%s\0%%s\0' "$1" "$(wc -c < "$r")"; head -c %d -- "$r"; }; `, MaxReportBytes))
	for _, p := range patterns {
		fmt.Fprintf(&b, "for f in %s; do [ -e \"$f\" ] && emit \"$f\"; done; ", globWord(p))
	}
	if auto {
		marker := q(path.Join(Meta(workdir), "runs", runID+".start"))
		fmt.Fprintf(&b, "find . \\( -name node_modules -o -name .git \\) -prune -o -type f \\( -name 'junit*.xml' -o -name 'TEST-*.xml' -o -name 'results.xml' \\) -newer %s -size -%dk -print 2>/dev/null | head -n 50 | while IFS= read -r f; do emit \"$f\"; done; rm -f %s; ", marker, MaxReportBytes>>10, marker)
	}
	b.WriteString("true")
	return b.String()
}

// globWord quotes a pattern for the shell so that only its glob
// characters (* ? [ ]) stay active: every other byte is single-quoted.
func globWord(p string) string {
	var b strings.Builder
	lit := func(s string) {
		if s != "" {
			b.WriteString(sshx.Quote(s))
		}
	}
	start := 0
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '*', '?', '[', ']':
			lit(p[start:i])
			b.WriteByte(p[i])
			start = i + 1
		}
	}
	lit(p[start:])
	if b.Len() == 0 {
		return "''"
	}
	return b.String()
}
