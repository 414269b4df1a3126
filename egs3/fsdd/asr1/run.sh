#!/usr/bin/env bash
# espnet3 recipe: the repository's environment and corpus locations (shared with egs2),
# then run.py with the given options (./run.sh --help).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
. ../../../egs2/TEMPLATE/path.sh
. ../../../egs2/TEMPLATE/db.sh
exec python3 run.py "$@"
