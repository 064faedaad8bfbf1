// Package sshx is crabbox's SSH transport: POSIX quoting, OpenSSH argv
// construction and the one-tunnel-per-process Session. (The remote command
// lines themselves are rendered by internal/remotecmd.)
//
// Every SSH use inside one crabbox process (ready check, fingerprint read,
// rsync, command, result collection) goes through one Session, which owns a
// single OpenSSH control master over a single ProxyCommand (for Coder,
// `coder ssh --stdio`). Agent and X11 forwarding are always off, host keys
// go to the target's own known_hosts file (never ~/.ssh/known_hosts), and
// the master is torn down by Session.Close when the process ends.
package sshx
