#!/usr/bin/env bash
# OFA pretraining recipe template: a once-for-all student (runs at any frame period in
# its range) distilled from a teacher SSL model. Stages:
#    1 data preparation (local/data.sh)       7 teacher: hubert_train training
#    2 speed perturbation                      8 pseudo segment boundaries (k-means units of
#    3 format wav.scp (check, resample, dump)    the teacher's features, or of MFCCs)
#    4 filter by length                        9 OFA: collect statistics
#    5 teacher: MFCC k-means unit labels      10 OFA: training (ofa_ssl_train), and the
#                                                fixed-rate baselines (--fixed_rate_periods)
#    6 teacher: hubert_train statistics       11 pack (a zip of config + model)
#                                             12 publish to a model zoo (--zoo DIR|hf:owner/repo)
# Stages 5-7 train a small HuBERT teacher offline (ESPnet's hubert_train, encoder
# torchaudio_hubert, on MFCC k-means units of the same audio); --teacher SOURCE uses
# another teacher instead (a torchaudio bundle name such as HUBERT_BASE, a fairseq .pt,
# a Hugging Face directory, a torchaudio checkpoint or an ESPnet hubert_train
# experiment) and skips them.
#
# ${train_cmd}, ${python} and the option strings are split into words on purpose:
# shellcheck disable=SC2086
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
# The whole script is one compound command, read completely before it runs, so that
# editing the file (a git pull) cannot break a recipe that is running.
{

_template=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
# shellcheck source=scripts/common.sh
. "${_template}/scripts/common.sh"
# shellcheck source=scripts/data_stages.sh
. "${_template}/scripts/data_stages.sh"

# General
stage=1                 # first stage to run
stop_stage=10000        # last stage to run
skip_data_prep=false    # skip stages 1-4
skip_upload=true        # skip stage 12
zoo=""                  # stage 12: a local zoo directory, or hf:owner/repo
ngpu=0                  # GPUs for training (0: CPU), per node
num_nodes=1             # nodes for OFA training (stage 10); > 1 needs cmd_backend=slurm
nj=2                    # parallel jobs of the data stages and of collect-stats
num_threads=1           # CPU threads per job (OMP/MKL)
dumpdir=dump            # formatted data
expdir=exp              # experiments
python=python3
# Data
local_data_opts=""      # options of local/data.sh
train_set=""
valid_set=""
fs=16k
min_wav_duration=0.1
max_wav_duration=20
speed_perturb_factors=""
# Teacher
teacher=""              # a teacher source; empty: train the small HuBERT of stages 5-7
teacher_config=""       # hubert_train config of that HuBERT
teacher_args=""         # extra options of espnet2.bin.hubert_train
n_units=50              # k-means units (MFCC) that the HuBERT learns to predict
# Pseudo boundaries
segment_feature=teacher # teacher (k-means of a teacher layer) or mfcc
segment_layer=""        # teacher layer to cluster (default: its last)
segment_opts="--n_clusters 30 --min_duration 2"  # more options of espnet_ofa.bin.segment
# OFA pretraining
ssl_config=""           # ofa_ssl_train config
ssl_args=""             # extra options of espnet_ofa.bin.ofa_ssl_train
ssl_tag=""              # experiment name (default: from the config)
packed_model=""         # stage 11 output (default: <exp>/packed.zip)
fixed_rate_periods=""   # ms; also pretrain a fixed-rate student (compression: fixed, average
                        # pooling) at each period, same data and budget: <exp>_fixed<P>
single_rate_periods=""  # ms; also pretrain a single-period CIF student (the OFA config with
                        # its rate held at that period) at each: <exp>_cif<P>
ssl_seeds=1             # pretrain every student (OFA and baselines) with seeds 0..N-1 from
                        # the same teacher and boundaries (exp suffix _seed<s> for s > 0)
max_parallel_exps=2     # stage 10: students trained at the same time on the CPU

# shellcheck disable=SC2034  # read by parse_options.sh
help_message=$(cat << EOF
Usage: ssl.sh --train_set <set> --valid_set <set> --ssl_config <yaml> [--teacher_config <yaml> | --teacher <source>] [options]

OFA pretraining; see the top of $0 for the stages. Options (default):
$(options_help "${_template}/ssl.sh")
EOF
)
# shellcheck source=scripts/parse_options.sh
. "${_template}/scripts/parse_options.sh"
[ $# -eq 0 ] || die "unexpected arguments: $*"
check_bool skip_data_prep skip_upload
[ -n "${train_set}" ] || die "--train_set is required"
[ -n "${valid_set}" ] || die "--valid_set is required"
case "${segment_feature}" in
    teacher | mfcc) ;;
    *) die "--segment_feature must be teacher or mfcc" ;;
esac

# shellcheck source=/dev/null  # the recipe's own files
[ -f path.sh ] && . ./path.sh
# shellcheck source=/dev/null
[ -f cmd.sh ] && . ./cmd.sh
: "${train_cmd:=${_template}/scripts/run_local.sh}"
: "${cuda_cmd:=${train_cmd}}"

# data_stages.sh needs these; pretraining reads no transcripts.
# shellcheck disable=SC2034  # read by data_stages.sh
test_sets=""
# shellcheck disable=SC2034
text_tables=""
data_feats="${dumpdir}/raw"
# Stages the skip_* options leave out (want_stage skips them).
skip_stages=""
[ "${skip_data_prep}" = false ] || skip_stages=" 1 2 3 4"

units_dir="${expdir}/hubert_units_mfcc${n_units}"
if [ -n "${teacher}" ]; then
    teacher_src=${teacher}
    teacher_exp=""
else
    [ -n "${teacher_config}" ] || [ "${stop_stage}" -lt 5 ] || die "give --teacher_config (train a HuBERT teacher) or --teacher SOURCE"
    teacher_exp="${expdir}/hubert_$(basename "${teacher_config:-none}" .yaml)"
    teacher_src=${teacher_exp}
fi
[ -n "${ssl_tag}" ] || ssl_tag=$(basename "${ssl_config:-none}" .yaml)
ssl_exp="${expdir}/ssl_${ssl_tag}"
ssl_stats_dir="${expdir}/ssl_stats_raw"
seg_dir="${expdir}/segments_${segment_feature}"
[ -n "${packed_model}" ] || packed_model="${ssl_exp}/packed.zip"

# hubert_data SPLIT SET: hubert_train's data options of one split.
hubert_data() {
    echo "--${1}_data_path_and_name_and_type ${data_feats}/${2}/wav.scp,speech,sound" \
        "--${1}_data_path_and_name_and_type ${units_dir}/${2}/text.km,text,text"
}

data_stages  # 1-4 (scripts/data_stages.sh); train_set is then the set trained on

[ "${stop_stage}" -lt 5 ] || ngpu=$(resolve_ngpu "${ngpu}")
_hubert_common="--config ${teacher_config} --use_preprocessor true --token_type word"
_hubert_common+=" --token_list ${units_dir}/tokens.txt --num_classes ${n_units}"
_hubert_common+=" $(hubert_data train "${train_set}") $(hubert_data valid "${valid_set}")"

if want_stage 5; then
    if [ -n "${teacher}" ]; then
        log "Stage 5: skipped: teacher given (--teacher ${teacher})"
    else
        stage_begin 5 "teacher units: MFCC k-means (${n_units}) labels in ${units_dir}"
        ${train_cmd} --num_threads 1 "${units_dir}/log/units.${train_set}.log" \
            ${python} -m espnet_ofa.bin.recipe kmeans_labels --data_dir "${data_feats}/${train_set}" \
            --out "${units_dir}/${train_set}/text.km" --n_clusters "${n_units}" \
            --token_list "${units_dir}/tokens.txt"
        ${train_cmd} --num_threads 1 "${units_dir}/log/units.${valid_set}.log" \
            ${python} -m espnet_ofa.bin.recipe kmeans_labels --data_dir "${data_feats}/${valid_set}" \
            --out "${units_dir}/${valid_set}/text.km" \
            --kmeans "${units_dir}/${train_set}/text.km.kmeans.npy"
        stage_end
    fi
fi
if want_stage 6; then
    if [ -n "${teacher}" ]; then
        log "Stage 6: skipped: teacher given"
    else
        stage_begin 6 "teacher: collect statistics (hubert_train)"
        ${train_cmd} --num_threads "${num_threads}" "${teacher_exp}_stats/stats.log" \
            ${python} -m espnet2.bin.hubert_train --collect_stats true --ngpu 0 ${_hubert_common} \
            --train_shape_file "${data_feats}/${train_set}/wav.scp" \
            --valid_shape_file "${data_feats}/${valid_set}/wav.scp" \
            --output_dir "${teacher_exp}_stats" ${teacher_args}
        stage_end
    fi
fi
if want_stage 7; then
    if [ -n "${teacher}" ]; then
        log "Stage 7: skipped: teacher given"
    else
        stage_begin 7 "teacher: HuBERT training into ${teacher_exp} (log ${teacher_exp}/train.log)"
        ${python} -m espnet_ofa.bin.recipe resume_check --exp_dir "${teacher_exp}"
        ${cuda_cmd} --gpu "${ngpu}" --num_threads "${num_threads}" "${teacher_exp}/train.log" \
            ${python} -m espnet2.bin.hubert_train --ngpu "${ngpu}" ${_hubert_common} \
            --train_shape_file "${teacher_exp}_stats/train/speech_shape" \
            --valid_shape_file "${teacher_exp}_stats/valid/speech_shape" \
            --fold_length 80000 --resume true --output_dir "${teacher_exp}" ${teacher_args}
        stage_end
    fi
fi

if want_stage 8; then
    stage_begin 8 "pseudo boundaries (${segment_feature}) in ${seg_dir}"
    _seg=(--feature "${segment_feature}")
    if [ "${segment_feature}" = teacher ]; then
        _seg+=(--teacher "${teacher_src}")
        [ -z "${segment_layer}" ] || _seg+=(--teacher_layer "${segment_layer}")
        if [ -z "${segment_layer}" ] && [ -n "${teacher_exp}" ]; then
            # The teacher's last layer: encoder_num_layers of its config.
            _layers=$(sed -n 's/^[[:space:]]*encoder_num_layers:[[:space:]]*\([0-9]*\).*/\1/p' "${teacher_config}" | head -n 1)
            _seg+=(--teacher_layer "${_layers:-12}")
        fi
    fi
    # A rerun keeps the boundaries of an unchanged teacher (its weights are recorded) and
    # settings, and starts over when either changed.
    _seg+=(--on_change restart)
    # One process (one teacher load) fits the units on a sample of the training set and
    # segments the valid set with them, and the training set too for one job; for more, the
    # training set is then segmented in ${nj} parallel parts with those units (the same
    # boundaries as one job gives).
    _train_seg="${seg_dir}/${train_set}"
    _fit=()
    [ "${nj}" -le 1 ] || _fit=(--fit_only)
    ${train_cmd} --num_threads 1 "${seg_dir}/log/segment.log" \
        ${python} -m espnet_ofa.bin.segment --data_dir "${data_feats}/${train_set}" \
        --out "${_train_seg}/boundaries" "${_seg[@]}" ${segment_opts} --no_progress "${_fit[@]}" \
        --also "${data_feats}/${valid_set}" "${seg_dir}/${valid_set}/boundaries"
    if [ "${nj}" -gt 1 ]; then
        _nj=$(split_keys "${data_feats}/${train_set}/wav.scp" "${nj}" "${_train_seg}/split")
        for _part in "${_train_seg}"/split/*/; do  # the parts of an earlier run with more jobs
            _j=$(basename "${_part}")
            if [[ "${_j}" =~ ^[0-9]+$ ]] && [ "${_j}" -gt "${_nj}" ]; then rm -rf "${_part}"; fi
        done
        for ((_j = 1; _j <= _nj; _j++)); do
            mkdir -p "${_train_seg}/split/${_j}"
            mv "${_train_seg}/split.${_j}.scp" "${_train_seg}/split/${_j}/wav.scp"
        done
        ${train_cmd} --num_threads 1 JOB=1:"${_nj}" "${seg_dir}/log/segment.${train_set}.JOB.log" \
            ${python} -m espnet_ofa.bin.segment --data_dir "${_train_seg}/split/JOB" \
            --out "${_train_seg}/split/JOB/boundaries" "${_seg[@]}" ${segment_opts} --no_progress \
            --kmeans "${_train_seg}/boundaries.kmeans.npy"
        # One table, sorted as Kaldi's are, written atomically.
        cat "${_train_seg}"/split/*/boundaries | LC_ALL=C sort > "${_train_seg}/.boundaries.tmp"
        mv "${_train_seg}/.boundaries.tmp" "${_train_seg}/boundaries"
    fi
    stage_end
fi

_ssl_common="--config ${ssl_config} --teacher ${teacher_src}"
if want_stage 9; then
    [ -n "${ssl_config}" ] || die "--ssl_config is required"
    stage_begin 9 "OFA: collect statistics into ${ssl_stats_dir}"
    _logdir="${ssl_stats_dir}/logdir"
    mkdir -p "${_logdir}"
    _nj=$(split_train_valid "${data_feats}/${train_set}/wav.scp" "${data_feats}/${valid_set}/wav.scp" "${nj}" "${_logdir}")
    rm -rf "${_logdir}"/stats.*
    ${train_cmd} --num_threads "${num_threads}" JOB=1:"${_nj}" "${_logdir}/stats.JOB.log" \
        ${python} -m espnet_ofa.bin.ofa_ssl_train --collect_stats true --ngpu 0 ${_ssl_common} \
        --train_data_path_and_name_and_type "${data_feats}/${train_set}/wav.scp,speech,sound" \
        --valid_data_path_and_name_and_type "${data_feats}/${valid_set}/wav.scp,speech,sound" \
        --train_shape_file "${_logdir}/train.JOB.scp" --valid_shape_file "${_logdir}/valid.JOB.scp" \
        --output_dir "${_logdir}/stats.JOB" ${ssl_args}
    _inputs=()
    for ((_j = 1; _j <= _nj; _j++)); do _inputs+=(--input_dir "${_logdir}/stats.${_j}"); done
    ${train_cmd} "${_logdir}/aggregate.log" ${python} -m espnet2.bin.aggregate_stats_dirs \
        "${_inputs[@]}" --output_dir "${ssl_stats_dir}"
    stage_end
fi
if want_stage 10; then
    [ -n "${ssl_config}" ] || die "--ssl_config is required"
    # Per pretraining seed, the OFA student and the baselines at each of their periods:
    # the same config, data, boundaries and steps (espnet_ofa.recipe.experiments plans them).
    _plan="${expdir}/plan.ssl.tsv"
    mkdir -p "${expdir}"
    ${python} -m espnet_ofa.bin.recipe ssl_plan --ssl_exp "${ssl_exp}" --ssl_seeds "${ssl_seeds}" \
        --fixed_rate_periods ${fixed_rate_periods} --single_rate_periods ${single_rate_periods} \
        > "${_plan}.tmp" || die "could not plan the students (see above)"
    mv "${_plan}.tmp" "${_plan}"
    _exps=()
    _extras=()
    while IFS=$'\t' read -r _d _x; do
        _exps+=("${_d}")
        _extras+=("${_x}")
    done < "${_plan}"
    # Several nodes: Slurm starts one process per node (run_slurm.sh --num_nodes) and
    # ESPnet's launcher spawns one worker per GPU there, ranks from Slurm's variables.
    _dist=""
    [ "${num_nodes}" -le 1 ] || _dist="--dist_launcher slurm --multiprocessing_distributed true --dist_master_port 29500"
    stage_begin 10 "OFA: training ${_exps[*]} (log <exp>/train.log)"
    bg_max=1
    [ "${ngpu}" -gt 0 ] || bg_max=${max_parallel_exps}
    for _i in "${!_exps[@]}"; do
        log "  ${_exps[_i]}: log ${_exps[_i]}/train.log"
        ${python} -m espnet_ofa.bin.recipe resume_check --exp_dir "${_exps[_i]}"
        bg_run ${cuda_cmd} --gpu "${ngpu}" --num_nodes "${num_nodes}" --num_threads "${num_threads}" "${_exps[_i]}/train.log" \
            ${python} -m espnet_ofa.bin.ofa_ssl_train --ngpu "${ngpu}" ${_dist} ${_ssl_common} \
            --train_data_path_and_name_and_type "${data_feats}/${train_set}/wav.scp,speech,sound" \
            --train_data_path_and_name_and_type "${seg_dir}/${train_set}/boundaries,boundaries,text_int" \
            --valid_data_path_and_name_and_type "${data_feats}/${valid_set}/wav.scp,speech,sound" \
            --valid_data_path_and_name_and_type "${seg_dir}/${valid_set}/boundaries,boundaries,text_int" \
            --train_shape_file "${ssl_stats_dir}/train/speech_shape" \
            --valid_shape_file "${ssl_stats_dir}/valid/speech_shape" \
            --fold_length 80000 --resume true --output_dir "${_exps[_i]}" ${_extras[_i]} ${ssl_args}
    done
    bg_wait
    # The periods each student serves: in the lam modes measured from its predictor's mean
    # alpha on the valid set, written into its config.yaml (the frontend reads it there).
    for _d in "${_exps[@]}"; do
        ${train_cmd} --num_threads "${num_threads}" "${_d}/trained_range.log" \
            ${python} -m espnet_ofa.bin.recipe trained_range --exp_dir "${_d}" \
            --data_dir "${data_feats}/${valid_set}"
    done
    stage_end
fi
if want_stage 11; then
    stage_begin 11 "pack ${packed_model}"
    ${python} -m espnet_ofa.bin.pack_model ssl --config "${ssl_exp}/config.yaml" \
        --model "${ssl_exp}/valid.loss.best.pth" --outpath "${packed_model}"
    stage_end
fi
if want_stage 12; then
    publish_stage 12 "OFA SSL model" "${packed_model}" "$(basename "${ssl_exp}")"
fi
log "Successfully finished. [elapsed=$((SECONDS - _run_t0)) s]"
exit 0
}
