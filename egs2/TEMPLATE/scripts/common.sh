# shellcheck shell=bash
# Helpers shared by asr.sh/slu.sh/st.sh (scripts/s2t.sh) and ssl.sh (sourced).
# stage and stop_stage are the caller's options:
# shellcheck disable=SC2154

# log MESSAGE...: a time-stamped line on stderr, as ESPnet's recipes print
# (log_name, default the script's name, says who speaks).
log() {
    printf '%s (%s) %s\n' "$(date '+%Y-%m-%dT%H:%M:%S')" "${log_name:-$(basename "$0")}" "$*" >&2
}

# die MESSAGE...: log and exit 1.
die() {
    log "error: $*"
    exit 1
}

# want_stage N: whether stage N is within --stage .. --stop_stage and not listed in
# skip_stages (which the --skip_* options fill).
want_stage() {
    [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ] &&
        [[ " ${skip_stages:-} " != *" $1 "* ]]
}

# stage_begin N TITLE: print the stage banner and start its clock.
_stage_t0=0
stage_begin() {
    _stage_t0=${SECONDS}
    log "Stage $1: $2"
}

# stage_end: how long the stage took.
stage_end() {
    log "  done in $((SECONDS - _stage_t0)) s (total $((SECONDS - _run_t0)) s)"
}
_run_t0=${SECONDS}

# options_help SCRIPT: the option block of SCRIPT (from "# General" to its help_message)
# as "--name default  # comment" lines, for --help.
options_help() {
    sed -n '/^# General$/,/^help_message=/p' "$1" |
        grep -v -e '^# shellcheck' -e '^[{}]$' -e '^\[ ' -e '^help_message=' |
        sed -e 's/^\([a-z_]*\)=/--\1 /' -e 's/^/    /'
}

# job_args [VAR=FIRST:LAST] LOG COMMAND [ARGS...]: the arguments of run_local.sh and
# run_slurm.sh after their options. Sets jobvar, first and last from the job range (Kaldi's
# "JOB=1:4"; without one: jobvar="" first=1 last=1), log, and the array job_cmd. An empty
# range (FIRST > LAST) is an error, and so is a missing LOG or COMMAND.
# job_instance J: sets jlog and the array jcmd: LOG and COMMAND of job J, ${jobvar} in them
# replaced by J.
# shellcheck disable=SC2034  # the caller's variables
job_args() {
    jobvar="" first=1 last=1
    if [[ "${1:-}" =~ ^([A-Za-z_][A-Za-z0-9_]*)=([0-9]+):([0-9]+)$ ]]; then
        jobvar=${BASH_REMATCH[1]} first=${BASH_REMATCH[2]} last=${BASH_REMATCH[3]}
        [ "${first}" -le "${last}" ] || die "empty job range ${first}:${last}"
        shift
    fi
    if [ $# -lt 2 ]; then
        echo "usage: $0 [options] [JOB=1:N] LOG COMMAND [ARGS...]" >&2
        exit 1
    fi
    log=$1
    shift
    job_cmd=("$@")
}
# shellcheck disable=SC2034
job_instance() {
    jlog=${log} jcmd=("${job_cmd[@]}")
    [ -n "${jobvar}" ] || return 0
    jlog=${log//${jobvar}/$1}
    jcmd=("${job_cmd[@]//${jobvar}/$1}")
}

# publish_stage N DESCRIPTION ZIP NAME [ZIP NAME ...]: stage N, the last of a pipeline:
# each packed ZIP into the --zoo as NAME (espnet_ofa.bin.publish); skipped unless
# --skip_upload false.
publish_stage() {
    local n=$1 description=$2
    shift 2
    if [ "${skip_upload}" = true ]; then
        log "Stage ${n}: skipped: upload (--skip_upload true)"
        return 0
    fi
    [ -n "${zoo}" ] || die "stage ${n} needs --zoo (a local directory, or hf:owner/repo)"
    stage_begin "${n}" "publishing to ${zoo}: ${description}"
    while [ $# -ge 2 ]; do
        ${python} -m espnet_ofa.bin.publish "$1" --zoo "${zoo}" --name "$2" \
            --description "${description}"
        shift 2
    done
    stage_end
}

# check_bool NAME...: each variable is true or false.
check_bool() {
    local name
    for name in "$@"; do
        case "${!name}" in
            true | false) ;;
            *) die "--${name} must be true or false, got '${!name}'" ;;
        esac
    done
}

# up_to_date TARGET SOURCE...: TARGET exists and is newer than every SOURCE (make's rule;
# a SOURCE that does not exist counts as changed), so a rerun can skip work it would repeat.
up_to_date() {
    local target=$1 source
    shift
    [ -e "${target}" ] || return 1
    for source in "$@"; do
        [ "${target}" -nt "${source}" ] || return 1
    done
}

# split_keys SCP N PREFIX: write PREFIX.1.scp .. PREFIX.N.scp, round-robin lines of SCP;
# prints the number of parts made (fewer than N for a short SCP).
split_keys() {
    local scp=$1 n=$2 prefix=$3 lines
    lines=$(wc -l < "${scp}")
    [ "${lines}" -gt 0 ] || die "${scp} is empty"
    [ "${n}" -le "${lines}" ] || n=${lines}
    rm -f "${prefix}".*.scp
    awk -v n="${n}" -v p="${prefix}" '{ print > (p "." ((NR - 1) % n + 1) ".scp") }' "${scp}"
    echo "${n}"
}

# split_train_valid TRAIN_SCP VALID_SCP N DIR: split both lists into the same number of
# parts (at most N, at most the lines of either) as DIR/train.<j>.scp and DIR/valid.<j>.scp,
# one pair per collect-stats job; prints that number.
split_train_valid() {
    local train=$1 valid=$2 n=$3 dir=$4 n_valid
    n=$(split_keys "${train}" "${n}" "${dir}/train")
    n_valid=$(split_keys "${valid}" "${n}" "${dir}/valid")
    if [ "${n_valid}" -lt "${n}" ]; then
        n=$(split_keys "${train}" "${n_valid}" "${dir}/train")
    fi
    echo "${n}"
}

# resolve_ngpu N: N when that many GPUs are visible to torch, else 0 with a warning.
resolve_ngpu() {
    local want=$1 have
    if [ "${want}" -le 0 ]; then
        echo 0
        return
    fi
    if [ "${cmd_backend:-local}" = slurm ]; then
        echo "${want}"  # the GPUs are on the compute nodes, not here
        return
    fi
    have=$(python3 -c 'import torch; print(torch.cuda.device_count())' 2> /dev/null || echo 0)
    if [ "${have}" -lt 1 ]; then
        log "warning: --ngpu ${want} but no GPU is visible; running on the CPU"
        echo 0
    elif [ "${have}" -lt "${want}" ]; then
        log "warning: --ngpu ${want} but only ${have} GPU(s) are visible; using ${have}"
        echo "${have}"
    else
        echo "${want}"
    fi
}

# bg_run CMD...: start CMD in the background, at most ${bg_max:-1} at a time: the next
# starts as soon as one ends (bash >= 5.1; older bash waits for a whole batch).
# bg_wait: wait for them all; die when any failed.
# bg_share FUNC ITEM...: the items shared round-robin among at most ${bg_max:-1} background
# calls FUNC ITEM_a ITEM_b ... (one process start-up for several items of work).
_bg_pids=()
_bg_failed=0
_bg_flush() {
    local pid
    for pid in "${_bg_pids[@]}"; do
        wait "${pid}" || _bg_failed=$((_bg_failed + 1))
    done
    _bg_pids=()
}
_bg_reap_one() {
    local pid="" kept=() p
    wait -n -p pid "${_bg_pids[@]}" || _bg_failed=$((_bg_failed + 1))
    for p in "${_bg_pids[@]}"; do
        [ "${p}" = "${pid}" ] || kept+=("${p}")
    done
    _bg_pids=("${kept[@]}")
}
bg_run() {
    if [ "${#_bg_pids[@]}" -ge "${bg_max:-1}" ]; then
        if ((BASH_VERSINFO[0] > 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] >= 1))); then
            _bg_reap_one
        else
            _bg_flush
        fi
    fi
    "$@" &
    _bg_pids+=("$!")
}
bg_share() {
    local fn=$1 b k
    shift
    local -a items=("$@") share
    for ((b = 0; b < ${bg_max:-1} && b < ${#items[@]}; b++)); do
        share=()
        for ((k = b; k < ${#items[@]}; k += ${bg_max:-1})); do share+=("${items[k]}"); done
        bg_run "${fn}" "${share[@]}"
    done
}
bg_wait() {
    _bg_flush
    if [ "${_bg_failed}" -gt 0 ]; then
        local n=${_bg_failed}
        _bg_failed=0
        die "${n} job(s) failed; their logs are named above"
    fi
}
