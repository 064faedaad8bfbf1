package remotecmd

import (
	"fmt"
	"strings"

	"github.com/crabbox-dev/crabbox/internal/sshx"
)

// ArtifactParams describe one artifact transfer: what to list, what to
// send, and the bounds.
type ArtifactParams struct {
	// Workdir is the remote workdir; every pattern and download is
	// relative to it and nothing outside it (or in its .crabbox
	// directory) is ever sent.
	Workdir string
	// Globs are collected; Require are collected too, and each one's
	// number of matching regular files is reported (an M record).
	Globs, Require []string
	// Downloads are single files (relative paths), sent only when every
	// Require pattern matched.
	Downloads []string
	// MaxFiles and MaxBytes bound the artifacts sent (matches past them
	// are counted, not sent); MaxBytes also bounds each download.
	MaxFiles int
	MaxBytes int64
	// Marker starts the stream: anything a login profile printed before
	// it is skipped by the reader.
	Marker string
}

// ArtifactScript is the one remote command of an artifact transfer. It
// runs under bash (globstar for "**"; dot files only when a pattern names
// them), resolves every match on the machine (realpath) and prints, on
// stdout, the marker and NUL-terminated records:
//
//	W <workdir>                       the workdir does not exist (nothing else follows)
//	N <kind> <path> <detail>          a match refused or skipped: outside (resolves out of
//	                                  the workdir; detail = where), meta (in .crabbox),
//	                                  notfile, dangling, unreadable
//	L <matched> <sent> <skipped> <skippedBytes>   files matched, sent, left out by the bounds
//	M <require index> <count>         regular files inside the workdir a Require pattern matched
//	A <path> <real> <size>            an artifact: its matched path, the resolved file
//	                                  (relative to the workdir) and its size
//	X <download index> <reason> <detail>  a download refused: missing, outside, meta,
//	                                  notfile, unreadable, toobig
//	D <download index> <real> <size>  a download
//	Q <program>                       a program the transfer needs is missing
//	Z                                 no file to send (the end)
//	T                                 a tar stream of the resolved files follows
//	                                  (./<real>, regular files only; the end)
//
// The same file under several matched paths is sent once. The script
// exits with tar's status (1: a file changed while it was read).
func ArtifactScript(p ArtifactParams) string {
	q := sshx.Quote
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("set -u; shopt -s globstar nullglob; shopt -u dotglob failglob extglob nocaseglob; ")
	w("maxf=%d; maxb=%d; ", p.MaxFiles, p.MaxBytes)
	w("printf '%%s\\0' %s; ", q(p.Marker))
	w("root=$(realpath -e -- %s 2>/dev/null) && cd -- \"$root\" 2>/dev/null || { printf 'W\\0%%s\\0' %s; exit 0; }; ", q(p.Workdir), q(p.Workdir))
	b.WriteString(`note() { printf 'N\0%s\0%s\0%s\0' "$1" "$2" "$3"; }; `)
	// where: inside (0), the workdir itself or a directory (1: skip
	// quietly), refused (2, noted by the caller).
	b.WriteString(`cands=(); pats=(); add() { cands+=("$1"); pats+=("$2"); }; `)
	for _, g := range p.Globs {
		w("for f in %s; do add \"$f\" g; done; ", globWord(g))
	}
	for i, g := range p.Require {
		w("for f in %s; do add \"$f\" %d; done; ", globWord(g), i)
	}
	// Resolve every candidate in one realpath call (one per candidate when
	// any failed, so the answers stay aligned).
	b.WriteString(`n=${#cands[@]}; reals=(); ` +
		`if (( n > 0 )); then mapfile -d '' reals < <(printf '%s\0' "${cands[@]}" | xargs -0 realpath -m -z -- 2>/dev/null); ` +
		`if (( ${#reals[@]} != n )); then reals=(); for f in "${cands[@]}"; do r=$(realpath -m -- "$f" 2>/dev/null) || r=; reals+=("$r"); done; fi; fi; `)
	b.WriteString(`declare -A seen cnt; names=(); rels=(); ` +
		`for ((k=0; k<n; k++)); do f=${cands[k]}; r=${reals[k]}; p=${pats[k]}; f=${f#./}; ` +
		`if [ -z "$r" ] || [ ! -e "$r" ]; then if [ -L "$f" ]; then note dangling "$f" ''; fi; continue; fi; ` +
		`case $r in "$root") continue ;; "$root"/.crabbox|"$root"/.crabbox/*) note meta "$f" ''; continue ;; "$root"/*) ;; *) note outside "$f" "$r"; continue ;; esac; ` +
		`if [ -d "$r" ]; then continue; fi; ` +
		`if [ ! -f "$r" ]; then note notfile "$f" ''; continue; fi; ` +
		`if [ ! -r "$r" ]; then note unreadable "$f" ''; continue; fi; ` +
		`if [ "$p" != g ]; then cnt[$p]=$(( ${cnt[$p]:-0} + 1 )); fi; ` +
		`if [ -n "${seen["$f"]+x}" ]; then continue; fi; seen["$f"]=1; names+=("$f"); rels+=("${r#"$root"/}"); done; `)
	// Sizes in one stat call (aligned, else one wc per file).
	b.WriteString(`ns=${#names[@]}; sizes=(); ` +
		`if (( ns > 0 )); then mapfile -t sizes < <(printf './%s\0' "${rels[@]}" | xargs -0 stat -L -c %s -- 2>/dev/null); ` +
		`if (( ${#sizes[@]} != ns )); then sizes=(); for r in "${rels[@]}"; do s=$(wc -c < "./$r" 2>/dev/null) || s=x; sizes+=("$s"); done; fi; fi; `)
	// The bounds: in match order, a file is sent while the count and the
	// bytes stay within them.
	b.WriteString(`sel=(); tot=0; skf=0; skb=0; ` +
		`for ((k=0; k<ns; k++)); do s=${sizes[k]}; case $s in ''|*[!0-9]*) note unreadable "${names[k]}" ''; continue ;; esac; ` +
		`if (( ${#sel[@]} < maxf && tot + s <= maxb )); then sel+=("$k"); tot=$((tot + s)); else skf=$((skf + 1)); skb=$((skb + s)); fi; done; ` +
		`printf 'L\0%d\0%d\0%d\0%d\0' "$ns" "${#sel[@]}" "$skf" "$skb"; `)
	ok := "ok=1; "
	for i := range p.Require {
		w("printf 'M\\0%%d\\0%%d\\0' %d \"${cnt[%d]:-0}\"; ", i, i)
		ok += fmt.Sprintf(`[ "${cnt[%d]:-0}" -gt 0 ] || ok=0; `, i)
	}
	b.WriteString(ok)
	b.WriteString(`declare -A inl; list=(); want() { if [ -z "${inl["$1"]+x}" ]; then inl["$1"]=1; list+=("$1"); fi; }; ` +
		`for k in "${sel[@]}"; do printf 'A\0%s\0%s\0%s\0' "${names[k]}" "${rels[k]}" "${sizes[k]}"; want "${rels[k]}"; done; `)
	if len(p.Downloads) > 0 {
		b.WriteString(`dl() { local i=$1 f=$2 r s; r=$(realpath -e -- "$f" 2>/dev/null) || { printf 'X\0%d\0missing\0\0' "$i"; return; }; ` +
			`case $r in "$root"/.crabbox|"$root"/.crabbox/*) printf 'X\0%d\0meta\0\0' "$i"; return ;; "$root"/*) ;; *) printf 'X\0%d\0outside\0%s\0' "$i" "$r"; return ;; esac; ` +
			`if [ ! -f "$r" ]; then printf 'X\0%d\0notfile\0\0' "$i"; return; fi; ` +
			`if [ ! -r "$r" ]; then printf 'X\0%d\0unreadable\0\0' "$i"; return; fi; ` +
			`s=$(stat -L -c %s -- "$r" 2>/dev/null) || s=$(wc -c < "$r"); ` +
			`if (( s > maxb )); then printf 'X\0%d\0toobig\0%s\0' "$i" "$s"; return; fi; ` +
			`printf 'D\0%d\0%s\0%s\0' "$i" "${r#"$root"/}" "$s"; want "${r#"$root"/}"; }; `)
		b.WriteString("if [ $ok = 1 ]; then ")
		for i, d := range p.Downloads {
			w("dl %d %s; ", i, q(d))
		}
		b.WriteString("fi; ")
	}
	b.WriteString(`if (( ${#list[@]} == 0 )); then printf 'Z\0'; exit 0; fi; ` +
		`if ! command -v tar >/dev/null 2>&1; then printf 'Q\0tar\0'; exit 0; fi; ` +
		`printf 'T\0'; printf './%s\0' "${list[@]}" | tar -C "$root" --null --no-recursion -cf - -T -`)
	return b.String()
}

// ArtifactCommand wraps script for the ssh command line: a bash without
// startup files (the script needs bash; profile output would only be
// noise before the marker).
func ArtifactCommand(script string) string {
	return "exec bash --norc --noprofile -c " + sshx.Quote(script) + " bash"
}
