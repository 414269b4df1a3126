# shellcheck shell=bash
# Where the corpora are (sourced from a recipe directory, egs2/<corpus>/<task>1).
# Set a variable in the environment to use another copy; a recipe downloads its corpus
# into the default location when that is empty.
_espnet_ofa_root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)

# Free Spoken Digit Dataset: the directory holding recordings/. Default: the read-only
# copy next to the repository (../shared/data/fsdd) when there is one, else downloads/fsdd
# in the recipe directory (local/data.sh fetches the GitHub release archive there).
if [ -z "${FSDD:-}" ]; then
    if [ -d "${_espnet_ofa_root}/../shared/data/fsdd/recordings" ]; then
        FSDD=$(cd "${_espnet_ofa_root}/../shared/data/fsdd" && pwd)
    else
        FSDD=downloads/fsdd
    fi
fi
export FSDD
unset _espnet_ofa_root
