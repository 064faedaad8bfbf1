// Package transfer copies files between this machine and a lease's remote
// workdir (crabbox cp): rsync over the lease's ssh tunnel, with cp -r's
// idea of where a copy lands, every name passed literally.
package transfer

import (
	"path"
	"regexp"
	"strings"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// Plan is a copy as the command line gave it.
type Plan struct {
	// Lease names the lease (the LEASE of LEASE:PATH, or --id).
	Lease string
	// Push is true for local sources and a remote destination, false for
	// remote sources and a local destination.
	Push bool
	// Sources and Dest are the paths as given, the remote ones without
	// their "LEASE:" prefix ("" for LEASE: alone, the workdir).
	Sources []string
	Dest    string
}

// leaseIdentRe is what may stand before the ':' of a remote operand: a
// lease ID, slug, workspace name or owner/workspace. Anything else (a
// path such as ./a:b or /x:y) is a local name.
var leaseIdentRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$`)

// splitOperand reports whether arg is remote (LEASE:PATH or, with --id,
// :PATH) and splits it.
func splitOperand(arg string) (lease, p string, remote bool) {
	i := strings.IndexByte(arg, ':')
	if i < 0 {
		return "", arg, false
	}
	if i == 0 || leaseIdentRe.MatchString(arg[:i]) {
		return arg[:i], arg[i+1:], true
	}
	return "", arg, false
}

// ParseArgs reads cp's operands: every one but the last is a source, the
// last is the destination. Exactly one side is remote; all remote operands
// name the same lease, which is id when id is set (then ":PATH" is enough).
// Errors are usage errors (exit 2).
func ParseArgs(args []string, id string) (Plan, error) {
	if len(args) < 2 {
		return Plan{}, exitcode.Errorf(exitcode.Usage, "cp needs a source and a destination: crabbox cp LOCAL... LEASE:REMOTE, or crabbox cp LEASE:REMOTE... LOCAL")
	}
	var p Plan
	leaseName := id
	remoteCount := 0
	parts := make([]string, len(args))
	remote := make([]bool, len(args))
	for i, a := range args {
		if a == "" {
			return Plan{}, exitcode.Errorf(exitcode.Usage, "cp: empty operand")
		}
		l, rest, isRemote := splitOperand(a)
		parts[i], remote[i] = rest, isRemote
		if !isRemote {
			continue
		}
		remoteCount++
		switch {
		case l == "" && leaseName == "":
			return Plan{}, exitcode.Errorf(exitcode.Usage, "cp: %q names no lease; write LEASE:%s or pass --id LEASE", a, rest)
		case l == "":
		case leaseName == "":
			leaseName = l
		case l != leaseName && id != "":
			return Plan{}, exitcode.Errorf(exitcode.Usage, "cp: %q names lease %s, but --id is %s", a, l, id)
		case l != leaseName:
			return Plan{}, exitcode.Errorf(exitcode.Usage, "cp: the operands name two leases (%s and %s); copy between a lease and this machine only", leaseName, l)
		}
	}
	last := len(args) - 1
	switch {
	case remoteCount == 0:
		return Plan{}, exitcode.Errorf(exitcode.Usage, "cp: no remote operand; name the lease side as LEASE:PATH (a local name with ':' is written ./name)")
	case remote[last] && remoteCount == 1:
		p.Push = true
	case !remote[last] && remoteCount == last:
		p.Push = false
	case remote[last]:
		return Plan{}, exitcode.Errorf(exitcode.Usage, "cp: copy from this machine to the lease or from the lease to this machine, not from lease to lease")
	default:
		return Plan{}, exitcode.Errorf(exitcode.Usage, "cp: the sources must all be local (to copy to the lease) or all on the lease (to copy here)")
	}
	p.Lease = leaseName
	p.Sources = parts[:last]
	p.Dest = parts[last]
	return p, nil
}

// RemotePath is p on the machine: relative paths resolve under workdir
// ("" is the workdir itself) and must stay inside it; absolute paths are
// taken as given (cleaned). A trailing slash is dropped.
func RemotePath(workdir, p string) (string, error) {
	if path.IsAbs(p) {
		return path.Clean(p), nil
	}
	j := path.Join(workdir, p)
	if j != workdir && !strings.HasPrefix(j, strings.TrimSuffix(workdir, "/")+"/") {
		return "", exitcode.Errorf(exitcode.Usage, "cp: remote path %q leaves the lease's workdir %s; give an absolute path to copy from elsewhere", p, workdir)
	}
	return j, nil
}

// escapeGlob escapes what the remote rsync would expand as a wildcard in
// a source name (it globs sender arguments even with --protect-args). A
// name holding both a backslash and a wildcard cannot be passed literally
// (rsync's receiver rejects the escaped name), so it is refused.
func escapeGlob(p string) (string, error) {
	if !strings.ContainsAny(p, "*?[") {
		return p, nil
	}
	if strings.Contains(p, `\`) {
		return "", exitcode.Errorf(exitcode.Usage, "cp: remote name %q holds both a backslash and a wildcard character; rsync cannot copy it literally (copy its directory instead)", p)
	}
	var b strings.Builder
	for _, r := range p {
		if r == '*' || r == '?' || r == '[' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String(), nil
}

// localArg is a local path as an rsync operand: a relative name gets
// "./" so a leading '-' is no option and a ':' no host.
func localArg(p string) string {
	if strings.HasPrefix(p, "/") || strings.HasPrefix(p, "./") || strings.HasPrefix(p, "../") {
		return p
	}
	return "./" + p
}

func usagef(format string, args ...any) error {
	return exitcode.Errorf(exitcode.Usage, "cp: "+format, args...)
}
