# shellcheck shell=bash
# The options a recipe's run.sh reads itself (sourced by run.sh, not run), such as --smoke:
# the caller sets a default for each and names them in run_options, then sources this file:
#     smoke=false          # true: the configs of conf/smoke/ on a small corpus
#     run_options="smoke"
#     . scripts/run_options.sh
# Each "--name value" or "--name=value" of "$@" whose name is in run_options sets that
# variable, wherever it stands; every other argument stays in "$@", in order, for the
# pipeline script (asr.sh, ssl.sh, ...), which checks it. A true/false option takes only
# true or false.

_ro_rest=()
# shellcheck disable=SC2154  # run_options is the caller's
while [ $# -gt 0 ]; do
    case "$1" in
        --*=*) _ro_name=${1%%=*} _ro_value=${1#*=} _ro_n=1 ;;
        --*) _ro_name=$1 _ro_value=${2-} _ro_n=2 ;;
        *) _ro_rest+=("$1"); shift; continue ;;
    esac
    _ro_name=${_ro_name#--}
    if [[ " ${run_options} " != *" ${_ro_name} "* ]]; then
        # The pipeline's option, with its value: a value is never read as an option here.
        _ro_rest+=("${@:1:${_ro_n}}")
        shift "$((_ro_n > $# ? $# : _ro_n))"
        continue
    fi
    if [ "${_ro_n}" -eq 2 ] && [ $# -lt 2 ]; then
        printf '%s: option --%s needs a value\n' "$(basename "$0")" "${_ro_name}" >&2
        exit 1
    fi
    case "${!_ro_name}" in
        true | false)
            case "${_ro_value}" in
                true | false) ;;
                *) printf "%s: --%s must be true or false, got '%s'\n" "$(basename "$0")" \
                       "${_ro_name}" "${_ro_value}" >&2
                   exit 1 ;;
            esac
            ;;
    esac
    printf -v "${_ro_name}" '%s' "${_ro_value}"
    shift "${_ro_n}"
done
set -- "${_ro_rest[@]}"
unset _ro_rest _ro_name _ro_value _ro_n
