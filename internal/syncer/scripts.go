package syncer

// Remote scripts. Each runs as `bash -c '<script>' crabbox-sync <args...>`
// with every argument single-quoted (sshx.Quote); no path is ever
// interpolated into the script text. Exit codes: 2 bad input, 3 could not
// write the workdir/metadata, 4 prune failed, 5 another sync owns the
// workdir (its lock stayed held, or a newer generation replaced this one).
//
// One writer at a time (issue 8, defect 4). <workdir>/.crabbox/sync/lock
// is an flock(1) lock: prepare (after its skip check), the receiving rsync
// (receiverScript, for its whole life) and finalize hold it. Each sync
// attempt has a generation token, recorded by prepare in
// .crabbox/sync/generation under the lock; the receiver and finalize
// refuse to write unless it is still theirs. So an rsync left over from a
// killed run (an older generation) can never write once a newer prepare
// ran: either it still holds the lock (prepare stops it, TERM, and waits
// for it to end), or it finds the new generation and refuses. The receiver
// records "<pid> <generation>" in .crabbox/sync/receiver and runs with
// CRABBOX_SYNC_GEN=<generation>, so prepare signals only that process.
// Without flock on the workspace the generation is still checked, and
// prepare stops the recorded older receiver right after recording its own
// generation; only the moment between those two steps is unfenced.

// prepareScript: $1 workdir, $2 full resync (1/0), $3 fingerprint check
// (1/0), $4 delete (1/0), $5 the caller's hook, $6 the new generation.
// stdin: the new fingerprint (may be empty) and a
// newline; then NUL-terminated content-id records (16 hex digits + path,
// see fingerprint) closed by an empty record; then the NUL-terminated new
// manifest.
//
// Prints "skip" when the stored fingerprint equals the new one (and then
// changes nothing: the skip check comes first and takes no lock, since a
// fingerprint is only ever written by a finalize of the current generation,
// with no receiver running). Otherwise it takes the lock (stopping an older
// receiver that holds it, then waiting up to 30 s for it to end), records
// $6 as the generation; full
// resync empties the workdir but for the lock; the stored
// fingerprint is removed (an interrupted sync is never trusted); files
// whose content-id record is not among the stored ones get mtime 0 so
// rsync's quick check re-sends them; with delete, every path of the old
// manifests (manifest, plus manifest.pending left by an interrupted sync)
// not in the new one is removed when it is a regular file or a symlink;
// parents emptied by that are removed (rmdir, best-effort). Paths are only
// touched or removed when relative, free of "", "." and ".." components,
// not under a protected .crabbox dir, and without a symlinked or missing
// parent. The new manifest (the union with the old one without delete) is
// saved as manifest.pending, the records as ids.pending; the script prints
// "sync <pruned>".
const prepareScript = `set -u
export LC_ALL=C
wd=$1 full=$2 fpon=$3 del=$4 gen=${6:-}
ps=() rmv=() dirs=() tch=()
case $wd in
/?*) ;;
*) echo "crabbox sync: refusing workdir '$wd'" >&2; exit 2 ;;
esac
meta=$wd/.crabbox/sync
# Caller's hook (e.g. stop what a killed run left running), before the tree
# is looked at or changed.
if [ -n "${5:-}" ]; then eval "$5"; fi
newfp=
IFS= read -r newfp || { echo "crabbox sync: no fingerprint line on stdin" >&2; exit 2; }
if [ "$full" != 1 ] && [ "$fpon" = 1 ] && [ -n "$newfp" ] && [ -f "$meta/manifest" ] && [ -f "$meta/fingerprint" ]; then
  oldfp=
  IFS= read -r oldfp < "$meta/fingerprint" || true
  if [ "$oldfp" = "$newfp" ]; then
    echo skip
    exit 0
  fi
fi
# safe P: P is relative, has no empty/./.. component, is not protected and
# every parent is a real directory; sets ps to its parents.
safe() {
  local p=$1 pre= rest=$1
  ps=()
  case /$p/ in
  *//* | */./* | */../*) return 1 ;;
  esac
  case $p in
  .crabbox/env | .crabbox/env/* | .crabbox/scripts | .crabbox/scripts/* | \
  .crabbox/logs | .crabbox/logs/* | .crabbox/captures | .crabbox/captures/* | \
  .crabbox/runs | .crabbox/runs/* | .crabbox/sync | .crabbox/sync/*) return 1 ;;
  esac
  while [[ $rest == */* ]]; do
    pre=${pre:+$pre/}${rest%%/*}
    rest=${rest#*/}
    if [ -L "$wd/$pre" ] || [ ! -d "$wd/$pre" ]; then return 1; fi
    ps+=("$pre")
  done
  return 0
}
case $gen in
'' | *[!0-9a-f]*) echo "crabbox sync: bad generation '$gen'" >&2; exit 2 ;;
esac
if [ "$full" = 1 ]; then
  for d in "$wd/.crabbox" "$meta"; do
    if [ -L "$d" ]; then rm -f -- "$d" || exit 3; fi
  done
fi
mkdir -p -- "$meta" || exit 3
# stop_receiver: end the receiver an older sync recorded, if it still runs
# (checked by its environment, so a reused PID is never signalled).
stop_receiver() {
  local p= g=
  read -r p g < "$meta/receiver" 2>/dev/null || return 0
  case $p in '' | *[!0-9]*) return 0 ;; esac
  if [ -n "$g" ] && [ "$g" != "$gen" ] && [ -r "/proc/$p/environ" ] &&
    tr '\0' '\n' < "/proc/$p/environ" | grep -qx "CRABBOX_SYNC_GEN=$g"; then
    kill -TERM "$p" 2>/dev/null
    echo "` + stoppedReceiverNote + ` ($g, pid $p)" >&2
  fi
  return 0
}
if command -v flock >/dev/null 2>&1; then
  exec 9>>"$meta/lock" || exit 3
  if ! flock -n 9; then
    # Only an older sync's receiver can hold it now: it must not write on.
    stop_receiver
    flock -w 30 9 || { echo "crabbox sync: an earlier sync into $wd still holds $meta/lock after 30s" >&2; exit 5; }
  fi
fi
if [ "$full" = 1 ]; then
  shopt -s dotglob nullglob
  for e in "$wd"/* "$wd"/.crabbox/* "$meta"/*; do
    if [ "$e" = "$wd/.crabbox" ] || [ "$e" = "$meta" ] || [ "$e" = "$meta/lock" ]; then continue; fi
    rm -rf -- "$e" || { echo "crabbox sync: cannot empty $wd" >&2; exit 3; }
  done
  shopt -u dotglob nullglob
fi
rm -f -- "$meta/fingerprint" || exit 3
printf '%s\n' "$gen" > "$meta/generation.tmp" && mv -f -- "$meta/generation.tmp" "$meta/generation" || exit 3
# Without flock, a receiver that passed its generation check just before
# the line above may still run: stop it.
command -v flock >/dev/null 2>&1 || stop_receiver
shopt -s nocasematch
new=$meta/new.$$ old=$meta/old.$$ ids=$meta/ids.$$
trap 'rm -f -- "$new" "$new.in" "$old" "$ids" "$ids.in"' EXIT
while IFS= read -r -d '' rec; do
  [ -n "$rec" ] || break
  printf '%s\0' "$rec"
done > "$ids.in" || exit 3
cat > "$new.in" || exit 3
sort -z -u -o "$ids" -- "$ids.in" || exit 3
sort -z -u -o "$new" -- "$new.in" || exit 3
if [ "$full" != 1 ]; then
  oldids=$meta/ids
  [ -f "$oldids" ] || oldids=/dev/null
  while IFS= read -r -d '' rec; do
    p=${rec:16}
    if safe "$p" && [ -f "$wd/$p" ] && [ ! -L "$wd/$p" ]; then tch+=("$p"); fi
  done < <(comm -z -23 -- "$ids" "$oldids")
  if [ "${#tch[@]}" -gt 0 ]; then
    (cd -- "$wd" && printf '%s\0' "${tch[@]}" | xargs -0 touch -c -m -d @0 --) || { echo "crabbox sync: cannot mark changed files" >&2; exit 3; }
  fi
fi
for f in "$meta/manifest" "$meta/manifest.pending"; do
  if [ -f "$f" ]; then cat -- "$f"; fi
done | sort -z -u > "$old" || exit 3
pruned=0
if [ "$del" = 1 ]; then
  while IFS= read -r -d '' p; do
    safe "$p" || continue
    if [ -L "$wd/$p" ] || [ -f "$wd/$p" ]; then
      rmv+=("$p")
      if [ "${#ps[@]}" -gt 0 ]; then dirs+=("${ps[@]}"); fi
    fi
  done < <(comm -z -23 -- "$old" "$new")
  if [ "${#rmv[@]}" -gt 0 ]; then
    (cd -- "$wd" && printf '%s\0' "${rmv[@]}" | xargs -0 rm -f --) || { echo "crabbox sync: pruning stale files failed" >&2; exit 4; }
    pruned=${#rmv[@]}
    if [ "${#dirs[@]}" -gt 0 ]; then
      (cd -- "$wd" && printf '%s\0' "${dirs[@]}" | sort -z -u -r | xargs -0 rmdir -- 2>/dev/null) || true
    fi
  fi
  mv -f -- "$new" "$meta/manifest.pending" || exit 3
else
  sort -z -u -m -o "$meta/manifest.pending" -- "$old" "$new" || exit 3
fi
mv -f -- "$ids" "$meta/ids.pending" || exit 3
echo "sync $pruned"
`

// finalizeScript: $1 workdir, $2 fingerprint, $3 generation. Under the
// lock, and only while $3 is still the recorded generation (else exit 5:
// a newer sync owns the workdir and this one's result means nothing):
// moves manifest.pending over manifest; with a fingerprint, moves
// ids.pending over ids and writes the fingerprint (temporary file +
// rename); without one (the synced state is uncertain) drops the ids so
// the next sync re-checks every hashed file.
const finalizeScript = `set -u
wd=$1 fp=$2 gen=${3:-}
meta=$wd/.crabbox/sync
[ -d "$meta" ] || { echo "crabbox sync: $meta is missing" >&2; exit 3; }
if command -v flock >/dev/null 2>&1; then
  exec 9>>"$meta/lock" || exit 3
  flock -w 30 9 || { echo "crabbox sync: $meta/lock still held after 30s" >&2; exit 5; }
fi
cur=
IFS= read -r cur < "$meta/generation" || true
if [ -z "$gen" ] || [ "$cur" != "$gen" ]; then
  echo "crabbox sync: not finalizing: a newer sync (generation ${cur:-none}) replaced this one ($gen)" >&2
  exit 5
fi
if [ -f "$meta/manifest.pending" ]; then
  mv -f -- "$meta/manifest.pending" "$meta/manifest" || exit 3
fi
if [ -n "$fp" ]; then
  if [ -f "$meta/ids.pending" ]; then mv -f -- "$meta/ids.pending" "$meta/ids" || exit 3; fi
  printf '%s\n' "$fp" > "$meta/fingerprint.tmp" && mv -f -- "$meta/fingerprint.tmp" "$meta/fingerprint" || exit 3
else
  rm -f -- "$meta/ids" "$meta/ids.pending" || exit 3
fi
echo done
`

// receiverMark starts every refusal receiverScript prints.
const receiverMark = "crabbox sync receiver:"

// receiverScript is how rsync's receiving side starts on the workspace
// (--rsync-path, see receiverCommand): $1 workdir, $2 generation, then the
// rsync program and the server arguments rsync appends. It takes the
// workdir's sync lock and execs rsync holding it (the open descriptor is
// inherited, so the lock lasts as long as the receiver), but only while $2
// is the generation prepare recorded: an rsync of an older, killed sync
// exits 5 instead of writing. It records its PID for prepare (see above).
const receiverScript = `set -u
meta=$1/.crabbox/sync gen=$2
shift 2
if command -v flock >/dev/null 2>&1; then
  exec 9>>"$meta/lock" || { echo "` + receiverMark + ` cannot open $meta/lock" >&2; exit 5; }
  flock -w 60 9 || { echo "` + receiverMark + ` $meta/lock still held after 60s" >&2; exit 5; }
fi
cur=
IFS= read -r cur < "$meta/generation" || true
if [ "$cur" != "$gen" ]; then
  echo "` + receiverMark + ` refusing to write into $1: a newer sync (generation ${cur:-none}) replaced this one ($gen)" >&2
  exit 5
fi
printf '%s %s\n' "$$" "$gen" > "$meta/receiver" || exit 5
export CRABBOX_SYNC_GEN=$gen
exec "$@"
`
