#!/usr/bin/env bash
# Run the test suite in .venv. Extra arguments go to pytest (e.g. -k cif, -x).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ ! -x .venv/bin/python ]]; then
    echo "tools/test.sh: .venv is missing; run 'bash tools/install.sh' first" >&2
    exit 1
fi
# pytest exits 5 when it collected no tests; that is a failure here.
.venv/bin/python -m pytest tests "$@"
