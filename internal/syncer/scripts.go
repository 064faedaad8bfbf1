package syncer

// Remote scripts. Each runs as `bash -c '<script>' crabbox-sync <args...>`
// with every argument single-quoted (sshx.Quote); no path is ever
// interpolated into the script text. Exit codes: 2 bad input, 3 could not
// write the workdir/metadata, 4 prune failed.

// prepareScript: $1 workdir, $2 full resync (1/0), $3 fingerprint check
// (1/0), $4 delete (1/0). stdin: the new fingerprint (may be empty) and a
// newline; then NUL-terminated content-id records (16 hex digits + path,
// see fingerprint) closed by an empty record; then the NUL-terminated new
// manifest.
//
// Prints "skip" when the stored fingerprint equals the new one (and then
// changes nothing). Otherwise: full resync empties the workdir; the stored
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
wd=$1 full=$2 fpon=$3 del=$4
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
shopt -s nocasematch
if [ "$full" = 1 ] && [ -d "$wd" ]; then
  shopt -s dotglob nullglob
  rm -rf -- "$wd"/* || { echo "crabbox sync: cannot empty $wd" >&2; exit 3; }
  shopt -u dotglob nullglob
fi
mkdir -p -- "$meta" || exit 3
rm -f -- "$meta/fingerprint" || exit 3
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

// finalizeScript: $1 workdir, $2 fingerprint. Moves manifest.pending over
// manifest; with a fingerprint, moves ids.pending over ids and writes the
// fingerprint (temporary file + rename); without one (the synced state is
// uncertain) drops the ids so the next sync re-checks every hashed file.
const finalizeScript = `set -u
wd=$1 fp=$2
meta=$wd/.crabbox/sync
[ -d "$meta" ] || { echo "crabbox sync: $meta is missing" >&2; exit 3; }
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
