# shellcheck shell=bash
# Environment of the recipes (sourced from a recipe directory, egs2/<corpus>/<task>1):
# the repository's virtual environment (made by `bash tools/install.sh`) comes first.
_espnet_ofa_root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
if [ ! -x "${_espnet_ofa_root}/.venv/bin/python" ]; then
    echo "path.sh: ${_espnet_ofa_root}/.venv not found; run 'bash tools/install.sh' in ${_espnet_ofa_root}" >&2
    return 1
fi
export VIRTUAL_ENV="${_espnet_ofa_root}/.venv"
case ":${PATH}:" in
    *":${VIRTUAL_ENV}/bin:"*) ;;
    *) export PATH="${VIRTUAL_ENV}/bin:${PATH}" ;;
esac
export PYTHONIOENCODING=UTF-8
export PYTHONUNBUFFERED=1  # progress lines reach the terminal as they are printed
# One thread per process unless told otherwise: the recipes' small models run faster so
# on a few cores (several threads spin more than they compute), and jobs run side by side.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export MKL_NUM_THREADS=${MKL_NUM_THREADS:-${OMP_NUM_THREADS}}
# ESPnet's g2p_en import tries to download nltk data; the recipes never need it.
export NLTK_DATA=${NLTK_DATA:-${_espnet_ofa_root}/.venv/nltk_data}
unset _espnet_ofa_root
