#!/usr/bin/env bash
# make demo: start the Coder lab and run the most complete crabbox flow on it.
# The lab stays up afterwards; stop it with: scripts/coder-lab/lab down
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
mkdir -p "$DEMO"
export XDG_CONFIG_HOME="$DEMO/config" XDG_STATE_HOME="$DEMO/state"
export CRABBOX_PROVIDER=coder CRABBOX_CODER_TEMPLATE="$CODER_LAB_TEMPLATE"

say "crabbox doctor --provider coder"
"$CRABBOX" doctor --provider coder

say "done: the lab is still up ($CODER_URL); stop it with: $LAB down"
