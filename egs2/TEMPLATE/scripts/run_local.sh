#!/usr/bin/env bash
# Run a command, or an array of jobs, on this machine with its output in a log file
# (the interface of Kaldi's run.pl, rewritten here).
#
#   run_local.sh [options] [JOB=1:N] LOG COMMAND [ARGS...]
#
# With JOB=1:N the command runs N times in parallel; "JOB" in LOG and in the arguments
# becomes the job number. Lines of the output that show progress (PROGRESS_PATTERN, an
# extended regex) are echoed, the rest goes to the log only. Exits non-zero when any job
# fails, naming its log and showing its last lines.
#
# Options (accepted for every backend; the local one uses only the first two):
#   --num_threads N   OMP/MKL threads of each job (default: the environment's, else 1)
#   --max_jobs_run N  at most N jobs at a time (default: all)
#   --gpu N, --mem SIZE, --time T  ignored here (see run_slurm.sh)
#   --num_nodes N     only 1 here (several nodes: run_slurm.sh)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

num_threads=${OMP_NUM_THREADS:-1}
max_jobs_run=0
while [ $# -gt 0 ]; do
    case "$1" in
        --num_threads) num_threads=$2; shift 2 ;;
        --max_jobs_run) max_jobs_run=$2; shift 2 ;;
        --gpu | --mem | --time | --partition | --config) shift 2 ;;
        --num_nodes)
            [ "$2" -le 1 ] || { echo "$0: --num_nodes $2: several nodes need the Slurm backend (cmd_backend=slurm in cmd.sh)" >&2; exit 1; }
            shift 2 ;;
        --*) echo "$0: unknown option $1" >&2; exit 1 ;;
        *) break ;;
    esac
done

job_args "$@"  # sets jobvar, first, last, log and job_cmd
pattern=${PROGRESS_PATTERN:-'^progress:|epoch results|^error:|Error|Traceback|The training was finished'}

# progress PREFIX: echo the lines of stdin worth showing, ESPnet's epoch lines shortened.
progress() {
    local line epoch valid
    while IFS= read -r line; do
        [[ "${line}" =~ ${pattern} ]] || continue
        if [[ "${line}" =~ ([0-9]+)epoch\ results: ]]; then
            epoch=${BASH_REMATCH[1]}
            valid=${line#*\[valid\] }
            valid=${valid%%, time=*}
            line="epoch ${epoch}: [valid] ${valid:0:200}"
        fi
        printf '%s%s\n' "$1" "${line:0:300}"
    done
    return 0
}

run_job() {
    local j=$1 jlog prefix="" rc start
    local -a jcmd
    job_instance "${j}"
    [ -z "${jobvar}" ] || [ "${first}" -eq "${last}" ] || prefix="[job ${j}] "
    mkdir -p "$(dirname "${jlog}")"
    start=${SECONDS}
    {
        printf '#'
        printf ' %q' "${jcmd[@]}"
        printf '\n# Started at %s\n#\n' "$(date)"
    } > "${jlog}"
    set +e
    OMP_NUM_THREADS=${num_threads} MKL_NUM_THREADS=${num_threads} "${jcmd[@]}" 2>&1 |
        tee -a "${jlog}" | progress "${prefix}"
    rc=${PIPESTATUS[0]}
    set -e
    {
        echo "# Accounting: time=$((SECONDS - start)) threads=${num_threads}"
        echo "# Ended (code ${rc}) at $(date)"
    } >> "${jlog}"
    if [ "${rc}" -ne 0 ]; then
        {
            echo "$(basename "$0"): job failed (code ${rc}); log: ${jlog}"
            tail -n 12 "${jlog}" | sed 's/^/    /'
        } >&2
    fi
    return "${rc}"
}

pids=()
failed=0
# wait_all: wait for the running jobs, counting the failed ones.
wait_all() {
    local pid
    for pid in "${pids[@]}"; do
        wait "${pid}" || failed=$((failed + 1))
    done
    pids=()
}
total=$((last - first + 1))
for ((j = first; j <= last; j++)); do
    run_job "${j}" &
    pids+=("$!")
    if [ "${max_jobs_run}" -gt 0 ] && [ "${#pids[@]}" -ge "${max_jobs_run}" ]; then
        wait_all
    fi
done
wait_all
if [ "${failed}" -gt 0 ]; then
    echo "$(basename "$0"): ${failed}/${total} job(s) failed" >&2
    exit 1
fi
