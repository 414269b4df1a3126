# shellcheck shell=bash
# How jobs run (sourced by the recipe scripts). Each *_cmd is called as
#     ${train_cmd} [--num_threads N] [--gpu N] [--mem SIZE] [JOB=1:N] LOG COMMAND...
# Backends, written in this repository (egs2/TEMPLATE/scripts/):
#   local: run_local.sh, on this machine (default)
#   slurm: run_slurm.sh, one sbatch job array per call (set SLURM_PARTITION, or add
#          --partition/--mem/--time below)
# Pick one with cmd_backend=slurm in the environment or here.
cmd_backend=${cmd_backend:-local}
_cmd_dir=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/scripts

case "${cmd_backend}" in
    local)
        export train_cmd="${_cmd_dir}/run_local.sh"
        export cuda_cmd="${_cmd_dir}/run_local.sh"
        export decode_cmd="${_cmd_dir}/run_local.sh"
        ;;
    slurm)
        export train_cmd="${_cmd_dir}/run_slurm.sh"
        export cuda_cmd="${_cmd_dir}/run_slurm.sh"
        export decode_cmd="${_cmd_dir}/run_slurm.sh"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (use local or slurm)" >&2
        return 1
        ;;
esac
unset _cmd_dir
