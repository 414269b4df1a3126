# shellcheck shell=bash
# Option parsing for the recipe scripts (sourced, not run).
#
# The caller first sets a default for every option variable (and, optionally,
# help_message), then sources this file:
#     stage=1
#     use_lm=false
#     . scripts/parse_options.sh
# Each leading "--name value" or "--name=value" sets the variable "name" (dashes in
# the name become underscores). An option without a variable of that name, or a
# true/false option given another value, stops the script with a message. --help or -h
# prints $help_message and exits 0. Parsing stops at "--" or at the first argument that
# is not an option; the remaining arguments stay in "$@".

_po_fail() {
    printf '%s: %s\n' "$(basename "$0")" "$*" >&2
    printf 'Run %s --help for the options.\n' "$(basename "$0")" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
        --help | -h)
            printf '%s\n' "${help_message:-No help for $(basename "$0").}"
            exit 0
            ;;
        --)
            shift
            break
            ;;
        --*=*)
            _po_name=${1%%=*}
            _po_value=${1#*=}
            shift
            ;;
        --*)
            [ $# -ge 2 ] || _po_fail "option $1 needs a value"
            _po_name=$1
            _po_value=$2
            shift 2
            ;;
        *)
            break
            ;;
    esac
    _po_name=${_po_name#--}
    _po_name=${_po_name//-/_}
    if [[ ! "${_po_name}" =~ ^[A-Za-z][A-Za-z0-9_]*$ ]] || ! declare -p "${_po_name}" > /dev/null 2>&1; then
        _po_fail "unknown option --${_po_name}"
    fi
    case "${!_po_name}" in
        true | false)
            case "${_po_value}" in
                true | false) ;;
                *) _po_fail "--${_po_name} takes true or false, not '${_po_value}'" ;;
            esac
            ;;
    esac
    printf -v "${_po_name}" '%s' "${_po_value}"
done
unset _po_name _po_value
