#!/usr/bin/env bash
# Run a command, or an array of jobs, through Slurm (the interface of run_local.sh and of
# Kaldi's slurm.pl, rewritten here).
#
#   run_slurm.sh [options] [JOB=1:N] LOG COMMAND [ARGS...]
#
# Submits one job array with `sbatch --wait`: job j runs the command with "JOB" replaced
# by j, in the current directory, its output in LOG (with j for JOB). Blocks until all
# are done; exits non-zero when any failed, naming its log.
#
# Options:
#   --num_threads N   --cpus-per-task (and OMP/MKL threads), default 1
#   --gpu N           --gres=gpu:N when N > 0
#   --mem SIZE        --mem (e.g. 8G)
#   --time T          --time (e.g. 4:00:00)
#   --partition P     --partition (default: $SLURM_PARTITION if set)
#   --max_jobs_run N  at most N array tasks at a time (--array=1-N%M)
#   --num_nodes N     multi-node training: N nodes per job (--nodes N --ntasks-per-node 1),
#                     the command started once per node through srun, so that ESPnet's
#                     launcher (--dist_launcher slurm) reads its rank from SLURM_PROCID
# Extra sbatch arguments: $SBATCH_EXTRA_ARGS (split on spaces).
# The job scripts are written with single-quoted code that runs later:
# shellcheck disable=SC2016
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

num_threads=1 gpu=0 mem="" time_limit="" partition=${SLURM_PARTITION:-} max_jobs_run=0
num_nodes=1
while [ $# -gt 0 ]; do
    case "$1" in
        --num_threads) num_threads=$2; shift 2 ;;
        --gpu) gpu=$2; shift 2 ;;
        --mem) mem=$2; shift 2 ;;
        --time) time_limit=$2; shift 2 ;;
        --partition) partition=$2; shift 2 ;;
        --max_jobs_run) max_jobs_run=$2; shift 2 ;;
        --num_nodes) num_nodes=$2; shift 2 ;;
        --config) shift 2 ;;
        --*) echo "$0: unknown option $1" >&2; exit 1 ;;
        *) break ;;
    esac
done
job_args "$@"  # sets jobvar, first, last, log and job_cmd
command -v sbatch > /dev/null || { echo "$0: sbatch not found (is Slurm installed?)" >&2; exit 1; }

qdir=$(dirname "${log}")/q
name=$(basename "${log}" .log)
name=${name//${jobvar:-JOB}/}
mkdir -p "${qdir}"
qdir=$(cd "${qdir}" && pwd)

# One script per job with the command written out (quoted), run by the array task.
for ((j = first; j <= last; j++)); do
    job_instance "${j}"  # sets jlog and jcmd
    mkdir -p "$(dirname "${jlog}")"
    jlog=$(cd "$(dirname "${jlog}")" && pwd)/$(basename "${jlog}")
    rm -f "${qdir}/${name}.${j}.rc"
    {
        printf '#'
        printf ' %q' "${jcmd[@]}"
        printf '\n# Submitted at %s\n#\n' "$(date)"
    } > "${jlog}"
    {
        echo "#!/usr/bin/env bash"
        printf 'cd %q || exit 1\n' "${PWD}"
        printf 'export OMP_NUM_THREADS=%q MKL_NUM_THREADS=%q\n' "${num_threads}" "${num_threads}"
        launch=""
        [ "${num_nodes}" -le 1 ] || launch="srun --ntasks-per-node 1 "
        printf '%s%s>> %q 2>&1\n' "${launch}" "$(printf '%q ' "${jcmd[@]}")" "${jlog}"
        echo 'rc=$?'
        printf 'echo "# Ended (code ${rc}) at $(date) on $(hostname)" >> %q\n' "${jlog}"
        printf 'echo "${rc}" > %q\n' "${qdir}/${name}.${j}.rc"
        echo 'exit "${rc}"'
    } > "${qdir}/${name}.${j}.sh"
    chmod +x "${qdir}/${name}.${j}.sh"
done
{
    echo "#!/usr/bin/env bash"
    printf 'exec bash %q/%s."${SLURM_ARRAY_TASK_ID}".sh\n' "${qdir}" "${name}"
} > "${qdir}/${name}.array.sh"

array="${first}-${last}"
[ "${max_jobs_run}" -le 0 ] || array="${array}%${max_jobs_run}"
opts=(--wait --job-name "${name}" --array "${array}" --cpus-per-task "${num_threads}"
    --output "${qdir}/${name}.%a.out")
[ "${gpu}" -le 0 ] || opts+=(--gres "gpu:${gpu}")
[ "${num_nodes}" -le 1 ] || opts+=(--nodes "${num_nodes}" --ntasks-per-node 1)
[ -z "${mem}" ] || opts+=(--mem "${mem}")
[ -z "${time_limit}" ] || opts+=(--time "${time_limit}")
[ -z "${partition}" ] || opts+=(--partition "${partition}")
# shellcheck disable=SC2206  # word splitting of the extra arguments is intended
[ -z "${SBATCH_EXTRA_ARGS:-}" ] || opts+=(${SBATCH_EXTRA_ARGS})
echo "$(basename "$0"): sbatch ${opts[*]} (${last} job(s); logs: ${log})"
sbatch "${opts[@]}" "${qdir}/${name}.array.sh" > /dev/null || true

failed=0
for ((j = first; j <= last; j++)); do
    job_instance "${j}"
    rc=$(cat "${qdir}/${name}.${j}.rc" 2> /dev/null || echo "none")
    if [ "${rc}" != 0 ]; then
        echo "$(basename "$0"): job ${j} failed (code ${rc}); log: ${jlog}" >&2
        failed=$((failed + 1))
    fi
done
[ "${failed}" -eq 0 ] || exit 1
