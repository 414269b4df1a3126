#!/usr/bin/env bash
# Create .venv (Python 3.12) in the repository root and install espnet_ofa with its
# test extras. An existing .venv is reused when it was built from the same dependency
# spec (setup.py and this script); otherwise it is rebuilt from scratch.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=.venv
marker="$venv/.espnet_ofa-spec"

find_python() {
    # pyenv shims exist for every version but only run the selected ones, so try the
    # real interpreter behind the shim as well.
    local candidate
    for candidate in "${PYTHON:-}" python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12; do
        [[ -n "$candidate" ]] || continue
        if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "tools/install.sh: no working python3.12 found; install Python 3.12 or set PYTHON=/path/to/python3.12" >&2
    return 1
}

spec=$(cat setup.py tools/install.sh | sha256sum | cut -d' ' -f1)
if [[ -f "$marker" && "$(cat "$marker")" == "$spec" ]] && "$venv/bin/python" -c 'import espnet_ofa' 2>/dev/null; then
    echo "tools/install.sh: reusing $venv (dependency spec unchanged)"
    exit 0
fi

python=$(find_python)
echo "tools/install.sh: building $venv with $python"
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --upgrade pip
"$venv/bin/python" -m pip install -e '.[test]'
# Written last: a half-built environment is never mistaken for a finished one.
echo "$spec" > "$marker"
echo "tools/install.sh: done; activate with 'source $venv/bin/activate'"
