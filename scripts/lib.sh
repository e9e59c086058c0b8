# The preamble every script shares (sourced, not run): strict mode, the repository as the
# working directory, and the cache outside the clone (~/.cache/flowstop or
# $FLOWSTOP_CACHE) with cargo's target directory in it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
cache=${FLOWSTOP_CACHE:-$HOME/.cache/flowstop}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
