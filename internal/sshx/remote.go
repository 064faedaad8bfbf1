package sshx

import (
	"strings"
	"unicode"
)

// ArgvCommand renders argv to run in workdir on the remote (spec §7.3):
//
//	cd '<workdir>' && [if [ -f '<envfile>' ]; then . '<envfile>'; fi && ]bash -lc 'cd '\''<workdir>'\'' && exec "$@"' bash '<arg1>' …
//
// Every argument reaches the program literally. The inner cd survives login
// shells that cd to $HOME. envFile, when set, is a remote file sourced by
// the outer shell before bash starts; it must export its variables
// (`export NAME='value'`) so they reach the command. Env values are never
// put on the command line.
func ArgvCommand(workdir string, argv []string, envFile string) string {
	cmd := prefix(workdir, envFile) + "bash -lc " + Quote("cd "+Quote(workdir)+` && exec "$@"`) + " bash"
	if len(argv) > 0 {
		cmd += " " + QuoteArgs(argv)
	}
	return cmd
}

// ShellCommand renders a shell script to run in workdir on the remote with
// the same prefix as ArgvCommand, then bash -lc '<cd workdir> && <script>'.
func ShellCommand(workdir, script, envFile string) string {
	return prefix(workdir, envFile) + "bash -lc " + Quote("cd "+Quote(workdir)+" && "+script)
}

// RemoteCommand picks ShellCommand for a single word NeedsShell accepts (so
// `crabbox run -- "pnpm i && pnpm test"` works) and ArgvCommand otherwise.
func RemoteCommand(workdir string, argv []string, envFile string) string {
	if NeedsShell(argv) {
		return ShellCommand(workdir, argv[0], envFile)
	}
	return ArgvCommand(workdir, argv, envFile)
}

// NeedsShell reports whether argv is a single word holding whitespace or
// any of & | ; < > * $ ( ) or a backtick, i.e. a shell script meant for
// bash -lc rather than a program name.
func NeedsShell(argv []string) bool {
	if len(argv) != 1 {
		return false
	}
	return strings.IndexFunc(argv[0], unicode.IsSpace) >= 0 || strings.ContainsAny(argv[0], "&|;<>*$()`")
}

func prefix(workdir, envFile string) string {
	p := "cd " + Quote(workdir) + " && "
	if envFile != "" {
		if !strings.Contains(envFile, "/") {
			envFile = "./" + envFile // `. name` would search PATH
		}
		p += "if [ -f " + Quote(envFile) + " ]; then . " + Quote(envFile) + "; fi && "
	}
	return p
}
