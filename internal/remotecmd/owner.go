package remotecmd

import (
	"fmt"
	"path"
	"strings"

	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// OwnerFile is the owner record of a workspace, in the work root: which
// state dir (machine) owns the workspace, for which lease, since when.
const OwnerFile = ".crabbox-owner.json"

// Exit codes of OwnerScript.
const (
	// OwnerForeign: the owner record names another machine.
	OwnerForeign = 80
	// OwnerBusy: a run started by another machine is still running.
	OwnerBusy = 81
)

// OwnerParams are the inputs of OwnerScript.
type OwnerParams struct {
	WorkRoot  string // remote work root (absolute)
	LeaseID   string
	MachineID string // this state dir's machine ID
	Now       string // RFC 3339, the record's createdAt when written
	// Reclaim takes the workspace over: a foreign record or run does not
	// refuse, and the record is rewritten.
	Reclaim bool
	// Write records this machine as the owner (when it is not already
	// recorded for LeaseID); false only checks (stop).
	Write bool
}

// OwnerScript checks and (with Write) writes the owner record in one round
// trip. It prints `crabbox-owner owner <machine> <lease> <createdAt>` for
// the record found ("-" for absent fields) and one
// `crabbox-owner busy <machine> <run>` line per live run of another
// machine: a run pid file under the work root whose process really is that
// run (its environment carries CRABBOX_RUN_ID=<run>, as ReapLeftovers
// checks; a dead run's pid file never counts) and whose
// CRABBOX_MACHINE_ID differs. Without Reclaim it exits OwnerForeign when
// the record names another machine, else OwnerBusy when such a run is
// live, changing nothing. Otherwise it writes the record atomically (temp
// file, mv; 0600) when Write is set and the record differs, and exits 0.
// Exit 97: the work root or the record cannot be written.
func OwnerScript(p OwnerParams) string {
	q := sshx.Quote
	reclaim, write := "0", "0"
	if p.Reclaim {
		reclaim = "1"
	}
	if p.Write {
		write = "1"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "root=%s; f=%s; me=%s; lease=%s; now=%s; reclaim=%s; write=%s\n",
		q(p.WorkRoot), q(path.Join(p.WorkRoot, OwnerFile)), q(p.MachineID), q(p.LeaseID), q(p.Now), reclaim, write)
	b.WriteString(ownerBody)
	return b.String()
}

// The record is one line: read, a builtin, takes it without a program.
const ownerBody = `old=
if [ -f "$f" ]; then IFS= read -r old 2>/dev/null < "$f" || :; fi
field() { # $1: a key of the record; sets v to its value, "" unless [A-Za-z0-9_.:+-]+
  v=
  case $old in *"\"$1\":\""*) ;; *) return ;; esac
  v=${old#*"\"$1\":\""}; v=${v%%"\""*}
  case $v in *[!A-Za-z0-9_.:+-]*) v= ;; esac
}
field machineId; om=$v; field leaseId; ol=$v; field createdAt; oc=$v
echo "crabbox-owner owner ${om:--} ${ol:--} ${oc:--}"
busy=0
for pf in "$root"/*/*/.crabbox/runs/run_*.pid; do
  [ -f "$pf" ] || continue
  id=$(basename "$pf" .pid); p=$(cat "$pf" 2>/dev/null)
  case $p in ''|*[!0-9]*) continue ;; esac
  [ -r /proc/$p/environ ] || continue
  env=$(tr '\0' '\n' < /proc/$p/environ 2>/dev/null)
  printf '%s\n' "$env" | grep -qx "CRABBOX_RUN_ID=$id" || continue
  m=$(printf '%s\n' "$env" | sed -n 's/^CRABBOX_MACHINE_ID=//p' | head -n 1)
  [ "$m" = "$me" ] && continue
  echo "crabbox-owner busy ${m:--} $id"; busy=1
done
if [ "$reclaim" != 1 ]; then
  if [ -n "$om" ] && [ "$om" != "$me" ]; then exit 80; fi
  if [ "$busy" = 1 ]; then exit 81; fi
fi
if [ "$write" = 1 ] && { [ "$om" != "$me" ] || [ "$ol" != "$lease" ]; }; then
  mkdir -p "$root" || exit 97
  tmp="$f.tmp.$$"
  (umask 077 && printf '{"leaseId":"%s","machineId":"%s","createdAt":"%s"}\n' "$lease" "$me" "$now" > "$tmp") && mv -f "$tmp" "$f" || { rm -f "$tmp"; exit 97; }
fi
exit 0
`

// OwnerRecord is what OwnerScript reported about the owner record ("" for
// absent fields).
type OwnerRecord struct {
	MachineID, LeaseID, CreatedAt string
}

// BusyRun is a live run of another machine.
type BusyRun struct {
	MachineID, RunID string
}

// ParseOwner reads OwnerScript's output (profile noise is ignored).
func ParseOwner(out string) (OwnerRecord, []BusyRun) {
	var rec OwnerRecord
	var busy []BusyRun
	val := func(s string) string {
		if s == "-" {
			return ""
		}
		return s
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "crabbox-owner" {
			continue
		}
		switch {
		case f[1] == "owner" && len(f) == 5:
			rec = OwnerRecord{MachineID: val(f[2]), LeaseID: val(f[3]), CreatedAt: val(f[4])}
		case f[1] == "busy" && len(f) == 4:
			busy = append(busy, BusyRun{MachineID: val(f[2]), RunID: f[3]})
		}
	}
	return rec, busy
}
