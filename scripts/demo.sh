#!/usr/bin/env bash
# make demo: start the Coder lab and run the most complete crabbox flow on
# it: doctor, warmup, a real `go test ./...` of a sample repo on the lab
# workspace, and the run history. The lab and the lease stay up afterwards;
# the script prints how to stop them.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
LAB="$ROOT/scripts/coder-lab/lab"
CRABBOX="$ROOT/bin/crabbox"

say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

say "lab up"
timeout 600 "$LAB" up >/dev/null
eval "$("$LAB" env)"

# crabbox's own config and state for the demo, away from the user's.
DEMO=${CRABBOX_DEMO_DIR:-$HOME/.cache/crabbox-demo}
export XDG_CONFIG_HOME="$DEMO/config" XDG_STATE_HOME="$DEMO/state"
REPO="$DEMO/sample-repo"

if [[ ! -d $REPO/.git ]]; then
	say "creating a sample Go repository in $REPO"
	mkdir -p "$REPO"
	cat >"$REPO/go.mod" <<'GO'
module example.com/crabbox-demo

go 1.22
GO
	cat >"$REPO/crab.go" <<'GO'
// Package crab counts legs.
package crab

// Legs returns how many legs n crabs have.
func Legs(n int) int { return 10 * n }
GO
	cat >"$REPO/crab_test.go" <<'GO'
package crab

import "testing"

func TestLegs(t *testing.T) {
	for n, want := range map[int]int{0: 0, 1: 10, 3: 30} {
		if got := Legs(n); got != want {
			t.Errorf("Legs(%d) = %d, want %d", n, got, want)
		}
	}
}
GO
	cat >"$REPO/crabbox.yaml" <<YAML
provider: coder
coder:
  template: $CODER_LAB_TEMPLATE
  workRoot: $DEMO/remote-work
YAML
	git -C "$REPO" init -q -b main
	git -C "$REPO" add -A
	git -C "$REPO" -c user.email=demo@example.com -c user.name=demo commit -qm "sample repo"
fi
cd "$REPO"

# The sample repo's crabbox.yaml sets coder.workRoot, a key a repo file may
# only set once its content is trusted.
say "crabbox config trust"
"$CRABBOX" config trust

say "crabbox doctor"
"$CRABBOX" doctor

if "$CRABBOX" status demo >/dev/null 2>&1; then
	say "reusing the lease 'demo'"
else
	say "crabbox warmup --slug demo"
	"$CRABBOX" warmup --slug demo
fi

# Lab workspaces use the system PATH; point them at this machine's Go.
GODIR=$(dirname "$(command -v go)")
say "crabbox run --id demo -- go test ./..."
"$CRABBOX" run --id demo --shell -- "PATH=$GODIR:\$PATH go test -v -count=1 ./..."

say "crabbox history"
"$CRABBOX" history --limit 5

cat >&2 <<EOT

Done. The lease 'demo' and the lab ($CODER_URL) are still up. To use them:
  eval "\$($LAB env)"
  export XDG_CONFIG_HOME=$XDG_CONFIG_HOME XDG_STATE_HOME=$XDG_STATE_HOME
  cd $REPO
  $CRABBOX run --id demo -- uname -a
  $CRABBOX stop demo && $LAB down
EOT
