#!/usr/bin/env bash
# make fuzz: run every Go fuzz target in the module for a bounded time each
# (FUZZTIME, default 30s) and print the executions per target.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-30s}
status=0
while IFS=: read -r file name; do
	pkg=./$(dirname "$file")
	log=$(mktemp)
	if go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$pkg" >"$log" 2>&1; then
		execs=$(grep -oE 'execs: [0-9]+' "$log" | tail -1 | awk '{print $2}')
		printf '%-28s %-24s ok   execs=%s\n' "$pkg" "$name" "${execs:-?}"
	else
		printf '%-28s %-24s FAIL (see below)\n' "$pkg" "$name"
		tail -30 "$log"
		status=1
	fi
	rm -f "$log"
done < <(grep -rhoE --include='*_test.go' -H '^func Fuzz[A-Za-z0-9_]+' internal | sed -E 's/func //')
exit $status
