#!/usr/bin/env bash
# The speech-to-text pipeline behind asr.sh, slu.sh and st.sh (one script, --task picks
# the ESPnet task). Stage numbers are ESPnet's:
#    1 data preparation (local/data.sh)        9 n-gram LM (needs --use_lm true)
#    2 speed perturbation                     10 collect statistics (shapes, feature stats)
#    3 format wav.scp (check, resample, dump)  11 training (one experiment per config)
#    4 filter by length                       12 decoding at each --frame_periods (and at a
#    5 token list                                learnt rate), one model load per experiment
#    6 LM statistics (--use_lm true)          13 scoring, RESULTS.md and a plot
#    7 LM training (--use_lm true)            14 packing (--skip_packing false)
#    8 LM perplexity (--use_lm true)          15 publish (--skip_upload false --zoo DIR)
# Every stage can be rerun: outputs are written atomically and recomputed; training
# resumes from its checkpoint.
#
# ${train_cmd}, ${python} and the option strings (local_data_opts, *_args, test_sets, ...)
# are split into words on purpose, as in ESPnet's scripts:
# shellcheck disable=SC2086
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
# The whole script is one compound command, read completely before it runs, so that
# editing the file (a git pull) cannot break a recipe that is running.
{

_template=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
# shellcheck source=common.sh
. "${_template}/scripts/common.sh"
# shellcheck source=data_stages.sh
. "${_template}/scripts/data_stages.sh"

# General
task=""                 # asr, slu or st (asr.sh, slu.sh and st.sh set it)
stage=1                 # first stage to run
stop_stage=10000        # last stage to run
skip_data_prep=false    # skip stages 1-5
skip_train=false        # skip stages 6-11
skip_eval=false         # skip stages 12-13
skip_packing=true       # skip stage 14
skip_upload=true        # skip stage 15
zoo=""                  # stage 15: a local zoo directory, or hf:owner/repo
ngpu=0                  # GPUs for training and decoding (0: CPU)
nj=2                    # parallel jobs of the data stages and of collect-stats
inference_nj=1          # parallel decoding jobs per experiment
num_threads=1           # CPU threads per job (OMP/MKL)
max_parallel_exps=2     # experiments trained/decoded at the same time on the CPU
dumpdir=dump            # formatted data
expdir=exp              # experiments
python=python3
# Data
local_data_opts=""      # options of local/data.sh
train_set=""
valid_set=""
test_sets=""
fs=16k                  # sample rate of the dumped audio
min_wav_duration=0.1    # seconds; shorter training utterances are dropped
max_wav_duration=20     # seconds; longer training utterances are dropped
speed_perturb_factors="" # e.g. "0.9 1.0 1.1" (empty: no speed perturbation)
# Tokens
lang=noinfo             # for the default names of the token list and stats dir
token_type=bpe          # word, char or bpe (st: of the target language)
nbpe=30                 # sentencepiece vocabulary size for bpe
bpemode=unigram
src_lang=""             # st: source language (default: --lang)
tgt_lang=""             # st: target language
src_token_type=bpe      # st: source tokens
src_nbpe=30
nbpe_fit_data=false     # true: raise nbpe/src_nbpe to what the text's characters need (smoke)
# Language model
use_lm=false
# shellcheck disable=SC2034  # no LM stages yet
lm_config=""
# The OFA SSL model under every experiment (frontend: ofa)
ofa_model=""            # its .pth; given to the configs as frontend_conf.model
ssl_recipe=""           # recipe directory whose run.sh makes ofa_model when it is missing
ssl_recipe_opts=""      # options for that run.sh (shell syntax: quote values with spaces)
fixed_rate_periods=""   # ms; also train each fixed-rate OFA config on the fixed-rate student
                        # pretrained at each period (ssl.sh --fixed_rate_periods; exp suffix _fixed<P>)
single_rate_periods=""  # ms; ... and on the single-period CIF student pretrained at each
                        # period (ssl.sh --single_rate_periods; exp suffix _cif<P>)
ssl_seeds=1             # pretraining seeds of every SSL student (ssl.sh --ssl_seeds; exp
                        # suffix _sslseed<s> for s > 0): intervals then cover pretraining
# Training (the <task>_* variables are read indirectly, by the task name)
# shellcheck disable=SC2034
{
asr_config=""           # the training config (slu_config, st_config for those tasks)
asr_configs=""          # several configs, one experiment each (overrides asr_config)
asr_args=""             # extra options of espnet2.bin.asr_train
asr_stats_dir=""        # statistics, one subdir per SSL model and period (default exp/asr_stats_raw_<lang>_<token_type>)
slu_config=""
slu_configs=""
slu_args=""
slu_stats_dir=""
st_config=""
st_configs=""
st_args=""
st_stats_dir=""
}
feats_normalize=global_mvn  # global_mvn, utterance_mvn or none
cache_features=true     # train frozen fixed-period OFA experiments on their features, computed
                        # once into ${dumpdir}/ofa_feats/<model_period_layers>/<set> (stage 10)
train_frame_periods=""  # ms; train each fixed-rate OFA config once per period (exp suffix _p<P>)
seeds=1                 # train every experiment with seeds 0..N-1 (exp suffix _seed<k> for k > 0)
pooled_periods=""       # ms; also train each fixed-rate OFA config on the OFA model at 20 ms with
                        # its features average-pooled to each period (the pooled rival; _pooled<P>)
teacher_pooled_periods="" # ms; ... and on the OFA model's teacher at 20 ms (frontend: ssl_teacher),
                        # its features average-pooled to each period (_teacher_pooled<P>)
teacher=""              # that teacher (HUBERT_BASE, a checkpoint, an ESPnet hubert_train exp);
                        # empty: the one named by the OFA model's config.yaml
jitter_control=false    # also train each learnt-rate model's control: its learnt period held
                        # fixed, the same probe jitter (exp suffix _jitter; after the learnt one)
# Decoding
inference_config=""     # YAML of decoding options (beam_size, ctc_weight, ...)
inference_model=valid.loss.best.pth
inference_tag=""        # decoding directory name (default from the config and model)
frame_periods="20 40 60 80"  # ms; a model with a learnt rate is decoded at that rate
decode_own_period=false # true: a downstream trained at one period is decoded at that period
                        # only (not switched to every --frame_periods; saves decoding passes)
results_md=RESULTS.md   # written by stage 13 (with RESULTS.png beside it)
smoke=false             # true: run.sh --smoke true; RESULTS.md says it is not a result
scoring_opts=""         # options of stage 13's scoring, e.g. "--metric PER" (phone transcripts)

[ "${1:-}" != --task ] || task=${2:-}
# shellcheck disable=SC2034  # read by parse_options.sh
help_message=$(cat << EOF
Usage: ${task:-asr}.sh --train_set <set> --valid_set <set> --test_sets "<sets>" --${task:-asr}_config <yaml> [options]

The ESPnet stages 1-15 for task '${task:-asr}' on an OFA SSL frontend (see the top of
${_template}/scripts/s2t.sh). Options and their defaults:
$(options_help "${_template}/scripts/s2t.sh")
EOF
)
# shellcheck source=parse_options.sh
. "${_template}/scripts/parse_options.sh"
[ $# -eq 0 ] || die "unexpected arguments: $*"

check_bool skip_data_prep skip_train skip_eval skip_packing skip_upload use_lm jitter_control cache_features
[ -n "${train_set}" ] || die "--train_set is required"
[ -n "${valid_set}" ] || die "--valid_set is required"
[ -n "${test_sets}" ] || die "--test_sets is required"

# shellcheck source=/dev/null  # the recipe's own files
[ -f path.sh ] && . ./path.sh
# shellcheck source=/dev/null
[ -f cmd.sh ] && . ./cmd.sh
# The tasks are espnet_ofa.espnet_tasks'; this script runs those whose options
# (--<task>_config, ...) it declares.
_tasks=$(${python} -c 'from espnet_ofa.espnet_tasks import task_names; print(*task_names())') \
    || die "cannot import espnet_ofa with ${python} (is path.sh right?)"
_runnable=""
for _t in ${_tasks}; do declare -p "${_t}_config" > /dev/null 2>&1 && _runnable+=" ${_t}"; done
case " ${_runnable} " in
    *" ${task} "*) log_name="${task}.sh" ;;
    *) die "--task must be one of${_runnable} (use <task>.sh), got '${task}'" ;;
esac
: "${train_cmd:=${_template}/scripts/run_local.sh}"
: "${cuda_cmd:=${train_cmd}}"
: "${decode_cmd:=${train_cmd}}"

# Task-specific names.
_cfg_var="${task}_configs"
configs=${!_cfg_var}
if [ -z "${configs}" ]; then
    _cfg_var="${task}_config"
    configs=${!_cfg_var}
fi
_args_var="${task}_args"
train_args=${!_args_var}
_stats_var="${task}_stats_dir"
stats_dir=${!_stats_var}
text_tables=text
if [ "${task}" = st ]; then
    text_tables="text src_text"
    src_lang=${src_lang:-${lang}}
    tgt_lang=${tgt_lang:-${lang}}
    lang_tag="${src_lang}_${tgt_lang}"
else
    lang_tag=${lang}
fi
[ -n "${stats_dir}" ] || stats_dir="${expdir}/${task}_stats_raw_${lang_tag}_${token_type}"
data_feats="${dumpdir}/raw"
token_listdir="data/${lang_tag}_token_list"
token_list="${token_listdir}/${token_type}/tokens.txt"
src_token_list="${token_listdir}/src_${src_token_type}/tokens.txt"
bpemodel="${token_listdir}/${token_type}/bpe.model"
src_bpemodel="${token_listdir}/src_${src_token_type}/bpe.model"

# Stages the skip_* options leave out (want_stage skips them).
skip_stages=""
[ "${skip_data_prep}" = false ] || skip_stages+=" 1 2 3 4 5"
[ "${skip_train}" = false ] || skip_stages+=" 6 7 8 9 10 11"
[ "${skip_eval}" = false ] || skip_stages+=" 12 13"

# The experiments (espnet_ofa.recipe.experiments plans them): exp_dirs[i] is trained from
# exp_configs[i] with the options exp_extra[i], on the SSL checkpoint exp_models[i] ("-": none),
# normalised with the statistics in ${stats_dir}/exp_stats[i] (one per SSL model and period,
# or per frontend without SSL). Before the SSL models exist, the experiments on their
# teacher wait: ensure_ofa_model plans again once its SSL recipe has made them.
exp_dirs=()
exp_configs=()
exp_stats=()
exp_models=()
exp_extra=()
plan_experiments() {
    local plan="${expdir}/plan.${task}.tsv" d c k m x
    # The option strings are lists of words (configs, periods):
    # shellcheck disable=SC2206
    local -a a=(--task "${task}" --configs ${configs} --expdir "${expdir}" --seeds "${seeds}"
        --train_frame_periods ${train_frame_periods} --fixed_rate_periods ${fixed_rate_periods}
        --single_rate_periods ${single_rate_periods} --ssl_seeds "${ssl_seeds}"
        --pooled_periods ${pooled_periods} --jitter_control "${jitter_control}"
        --teacher_pooled_periods ${teacher_pooled_periods} --teacher_pending true)
    [ -z "${ofa_model}" ] || a+=(--ofa_model "${ofa_model}")
    [ -z "${teacher}" ] || a+=(--teacher "${teacher}")
    mkdir -p "${expdir}"
    ${python} -m espnet_ofa.bin.recipe plan "${a[@]}" > "${plan}.tmp" || die "could not plan the experiments (see above)"
    mv "${plan}.tmp" "${plan}"
    exp_dirs=()
    exp_configs=()
    exp_stats=()
    exp_models=()
    exp_extra=()
    while IFS=$'\t' read -r d c k m x; do
        exp_dirs+=("${d}")
        exp_configs+=("${c}")
        exp_stats+=("${k}")
        exp_models+=("${m}")
        exp_extra+=("${x}")
    done < "${plan}"
    plan_caches
}

# plan_caches (after plan_experiments): exp_caches[i]: the feature cache experiment i trains
# on ("-": the live frontend); exp_stats[i] becomes the statistics it is normalised with (a
# cache's are its own, so per (model, period)); exp_collects[i]: 1 when it collects them;
# exp_extracts[i]: 1 when it extracts its cache (the first experiment on it);
# exp_cached_frontends[i]: its frontend on the cache (ofa_cached, ssl_teacher_cached).
plan_caches() {
    local caches="${expdir}/caches.${task}.tsv" k s c x f
    ${python} -m espnet_ofa.bin.feature_cache plan --plan "${expdir}/plan.${task}.tsv" \
        --train_args "${train_args}" --enabled "${cache_features}" > "${caches}" ||
        die "could not plan the feature caches (see above)"
    exp_caches=()
    exp_collects=()
    exp_extracts=()
    exp_cached_frontends=()
    while IFS=$'\t' read -r k s c x f; do
        exp_stats[${#exp_caches[@]}]=${s}
        exp_caches+=("${k}")
        exp_collects+=("${c}")
        exp_extracts+=("${x}")
        exp_cached_frontends+=("${f}")
    done < "${caches}"
}

# ensure_ofa_model: make the SSL checkpoints of the experiments (--ofa_model, the
# single-period students and every pretraining seed) with --ssl_recipe when one is missing,
# then plan again (the experiments on the OFA model's teacher join the plan).
ensure_ofa_model() {
    local m missing=""
    for m in "${exp_models[@]}"; do
        [ "${m}" = - ] || [ -f "${m}" ] || [[ "${missing} " == *" ${m} "* ]] || missing+=" ${m}"
    done
    [ -n "${missing}" ] || return 0
    [ -n "${ssl_recipe}" ] || die "SSL model(s)${missing} not found; train them (e.g. with ../ssl1/run.sh) or set --ssl_recipe"
    log "SSL model(s)${missing} not found: running ${ssl_recipe}/run.sh ${ssl_recipe_opts} first"
    # eval: the options may quote values with spaces, e.g. --local_data_opts '--train_takes 5'
    (cd "${ssl_recipe}" && eval "./run.sh --ngpu ${ngpu} --fixed_rate_periods '${fixed_rate_periods}' --single_rate_periods '${single_rate_periods}' --ssl_seeds ${ssl_seeds} ${ssl_recipe_opts}")
    for m in ${missing}; do
        [ -f "${m}" ] || die "${ssl_recipe}/run.sh finished but ${m} does not exist; check --ofa_model, --fixed_rate_periods, --single_rate_periods and --ssl_seeds"
    done
    log "SSL model(s) ready:${missing}"
    plan_experiments
}

# Options every <task>_train call shares: tokens and data; speech from the feature cache
# CACHE_KEY when given one ("-" or nothing: the waveforms).
common_train_args() {
    local set cache=${1:--}
    local -a a=(--use_preprocessor true --token_type "${token_type}" --token_list "${token_list}")
    [ "${token_type}" != bpe ] || a+=(--bpemodel "${bpemodel}")
    if [ "${task}" = st ]; then
        a+=(--src_token_type "${src_token_type}" --src_token_list "${src_token_list}")
        [ "${src_token_type}" != bpe ] || a+=(--src_bpemodel "${src_bpemodel}")
    fi
    for set in train valid; do
        local dset=${train_set}
        [ "${set}" = train ] || dset=${valid_set}
        if [ "${cache}" = - ]; then
            a+=(--"${set}"_data_path_and_name_and_type "${data_feats}/${dset}/wav.scp,speech,sound")
        else
            a+=(--"${set}"_data_path_and_name_and_type "${feats_cache}/${cache}/${dset}/feats.scp,speech,kaldi_ark")
        fi
        a+=(--"${set}"_data_path_and_name_and_type "${data_feats}/${dset}/text,text,text")
        [ "${task}" != st ] || a+=(--"${set}"_data_path_and_name_and_type
            "${data_feats}/${dset}/src_text,src_text,text")
    done
    printf '%s\n' "${a[@]}"
}

# ----------------------------------------------------------------------------- stages 1-5
data_stages  # 1-4 (scripts/data_stages.sh); train_set is then the set trained on
if want_stage 5; then
    stage_begin 5 "token list (${token_type}) in ${token_listdir}"
    ${train_cmd} --num_threads 1 "${token_listdir}/log/${token_type}.log" \
        ${python} -m espnet_ofa.bin.recipe token_list --text "${data_feats}/${train_set}/text" \
        --out "${token_list}" --token_type "${token_type}" --nbpe "${nbpe}" --bpemode "${bpemode}" \
        --nbpe_fit_data "${nbpe_fit_data}" --nbpe_option=--nbpe
    if [ "${task}" = st ]; then
        ${train_cmd} --num_threads 1 "${token_listdir}/log/src_${src_token_type}.log" \
            ${python} -m espnet_ofa.bin.recipe token_list \
            --text "${data_feats}/${train_set}/src_text" --out "${src_token_list}" \
            --token_type "${src_token_type}" --nbpe "${src_nbpe}" --bpemode "${bpemode}" \
            --nbpe_fit_data "${nbpe_fit_data}" --nbpe_option=--src_nbpe
    fi
    stage_end
fi

# ----------------------------------------------------------------------------- stages 6-9
for _s in 6 7 8 9; do
    if want_stage "${_s}"; then
        if [ "${use_lm}" = true ]; then
            die "stage ${_s}: --use_lm true, but this template has no LM stages yet (the FSDD recipes decode without an LM); rerun with --use_lm false"
        fi
        log "Stage ${_s}: skipped: no LM in this recipe (--use_lm false)"
    fi
done

# ----------------------------------------------------------------------------- stages 10-11
_packing_stages=false
if { want_stage 14 && [ "${skip_packing}" = false ]; } || { want_stage 15 && [ "${skip_upload}" = false ]; }; then
    _packing_stages=true
fi
if want_stage 10 || want_stage 11 || want_stage 12 || want_stage 13 || [ "${_packing_stages}" = true ]; then
    [ -n "${configs}" ] || die "--${task}_config is required for stages 10-15"
    for _c in ${configs}; do
        [ -f "${_c}" ] || die "training config ${_c} not found"
    done
    ngpu=$(resolve_ngpu "${ngpu}")
    plan_experiments
fi
feats_cache="${dumpdir}/ofa_feats"

# extract_features I: the cached features of experiment I's frontend for the training and
# validation sets, in one process (one start-up and one model load for both).
# shellcheck disable=SC2329  # called through bg_run
extract_features() {
    local i=$1 out="${feats_cache}/${exp_caches[$1]}"
    # shellcheck disable=SC2086  # the extra options are several words
    ${train_cmd} --num_threads "${num_threads}" "${out}/extract.log" \
        ${python} -m espnet_ofa.bin.feature_cache extract --config "${exp_configs[i]}" \
        --options "${exp_extra[i]} ${train_args}" \
        --data_dir "${data_feats}/${train_set}" "${data_feats}/${valid_set}" \
        --out_dir "${out}/${train_set}" "${out}/${valid_set}" \
        --device "$([ "${ngpu}" -gt 0 ] && echo cuda || echo cpu)"
}

# stats_sources I: what the statistics of experiment I's frontend are computed from (the
# config, data, token list and the features or SSL model), one per line: newer than all of
# them, they are up to date, so a rerun collects only what is new or changed.
stats_sources() {
    local i=$1 dset
    printf '%s\n' "${exp_configs[i]}" "${token_list}"
    for dset in "${train_set}" "${valid_set}"; do
        printf '%s\n' "${data_feats}/${dset}/wav.scp" "${data_feats}/${dset}/text"
        [ "${exp_caches[i]}" = - ] || echo "${feats_cache}/${exp_caches[i]}/${dset}/feats.scp"
    done
    [ "${exp_models[i]}" = - ] || echo "${exp_models[i]}"
}

# collect_stats I...: stage 10 for the frontends of experiments I..., each into
# ${stats_dir}/<its key>. ESPnet's collect-stats runs of all of them share one process per
# job (espnet_ofa.bin.collect_stats), which pays ESPnet's start-up once, not per frontend;
# their log is ${stats_dir}/logdir/<the first one's key>.JOB.log.
# shellcheck disable=SC2329  # called through bg_run
collect_stats() {
    local i j n sdir logdir
    local -a common cached files=() inputs
    for i in "$@"; do
        sdir="${stats_dir}/${exp_stats[i]}"
        logdir="${sdir}/logdir"
        rm -f "${sdir}/collected"
        mkdir -p "${logdir}"
        mapfile -t common < <(common_train_args "${exp_caches[i]}")
        cached=()
        [ "${exp_caches[i]}" = - ] || cached=(--frontend "${exp_cached_frontends[i]}")
        # The same sets and --nj for every frontend: the same number of parts.
        n=$(split_train_valid "${data_feats}/${train_set}/wav.scp" "${data_feats}/${valid_set}/wav.scp" "${nj}" "${logdir}")
        rm -rf "${logdir}"/stats.*
        # One option per line; JOB becomes the job's number (train_cmd's placeholder).
        # shellcheck disable=SC2086  # train_args and the extra options hold several options
        printf '%s\n' --ngpu 0 --config "${exp_configs[i]}" "${common[@]}" \
            --train_shape_file "${logdir}/train.JOB.scp" --valid_shape_file "${logdir}/valid.JOB.scp" \
            --output_dir "${logdir}/stats.JOB" ${exp_extra[i]} ${train_args} "${cached[@]}" \
            > "${logdir}/collect_stats.args"
        files+=(--args_file "${logdir}/collect_stats.args")
    done
    log "  collecting $# in one process (log ${stats_dir}/logdir/${exp_stats[$1]}.JOB.log)"
    ${train_cmd} --num_threads "${num_threads}" JOB=1:"${n}" "${stats_dir}/logdir/${exp_stats[$1]}.JOB.log" \
        ${python} -m espnet_ofa.bin.collect_stats --task "${task}" --job JOB "${files[@]}"
    for i in "$@"; do
        sdir="${stats_dir}/${exp_stats[i]}"
        logdir="${sdir}/logdir"
        inputs=()
        for ((j = 1; j <= n; j++)); do inputs+=(--input_dir "${logdir}/stats.${j}"); done
        ${train_cmd} "${logdir}/aggregate.log" ${python} -m espnet2.bin.aggregate_stats_dirs \
            "${inputs[@]}" --output_dir "${sdir}"
        touch "${sdir}/collected"
    done
}

if want_stage 10; then
    stage_begin 10 "collect statistics into ${stats_dir}/<frontend>: $(printf '%s\n' "${exp_stats[@]}" | sort -u | tr '\n' ' ')"
    ensure_ofa_model
    # The feature caches first (one per model, period and layers; kept across reruns).
    bg_max=${max_parallel_exps}
    for _i in "${!exp_dirs[@]}"; do
        _key=${exp_caches[_i]}
        [ "${exp_extracts[_i]}" = 1 ] || continue
        log "  features: ${feats_cache}/${_key}/{${train_set},${valid_set}} (log ${feats_cache}/${_key}/extract.log)"
        mkdir -p "${feats_cache}/${_key}"
        bg_run extract_features "${_i}"
    done
    bg_wait
    # One pass per frontend (the first experiment using it) whose statistics are missing or
    # older than what they come from, shared out among --max_parallel_exps processes.
    _todo=()
    for _i in "${!exp_dirs[@]}"; do
        [ "${exp_collects[_i]}" = 1 ] || continue
        _sdir="${stats_dir}/${exp_stats[_i]}"
        mapfile -t _sources < <(stats_sources "${_i}")
        if up_to_date "${_sdir}/collected" "${_sources[@]}"; then
            log "  ${_sdir}: up to date"
            continue
        fi
        log "  ${_sdir} (config ${exp_configs[_i]} ${exp_extra[_i]})"
        _todo+=("${_i}")
    done
    bg_share collect_stats "${_todo[@]}"
    bg_wait
    stage_end
fi

if want_stage 11; then
    stage_begin 11 "training: ${exp_dirs[*]}"
    ensure_ofa_model
    case "${feats_normalize}" in
        global_mvn | utterance_mvn | none) ;;
        *) die "--feats_normalize must be global_mvn, utterance_mvn or none" ;;
    esac
    _runs=()  # --run <args file> <log> of every training
    _on_cache=()  # trainings on the cache; the experiments that get their waveform models:
    _waveform=()
    for _i in "${!exp_dirs[@]}"; do
        mapfile -t _common < <(common_train_args "${exp_caches[_i]}")
        _exp=${exp_dirs[_i]}
        _c=${exp_configs[_i]}
        _sdir="${stats_dir}/${exp_stats[_i]}"
        [ -f "${_sdir}/train/speech_shape" ] || die "${_sdir}: no statistics for ${_exp}; run stage 10"
        case "${feats_normalize}" in
            global_mvn) _norm=(--normalize global_mvn --normalize_conf "stats_file=${_sdir}/train/feats_stats.npz") ;;
            utterance_mvn) _norm=(--normalize utterance_mvn) ;;
            none) _norm=(--normalize none) ;;
        esac
        _shapes=(--train_shape_file "${_sdir}/train/speech_shape"
            --train_shape_file "${_sdir}/train/text_shape"
            --valid_shape_file "${_sdir}/valid/speech_shape"
            --valid_shape_file "${_sdir}/valid/text_shape"
            --fold_length 80000 --fold_length 150)
        if [ "${task}" = st ]; then
            _shapes+=(--train_shape_file "${_sdir}/train/src_text_shape"
                --valid_shape_file "${_sdir}/valid/src_text_shape" --fold_length 150)
        fi
        mkdir -p "${_exp}/logdir"
        log "  ${_exp}: log ${_exp}/train.log"
        _out=${_exp}
        _cached=()
        if [ "${exp_caches[_i]}" != - ]; then
            # On the cache: ESPnet trains in <exp>/cached and samples batches by the audio
            # lengths (in samples, as the live frontend does); <exp> gets the waveform model.
            _out=${_exp}/cached
            _cached=(--frontend "${exp_cached_frontends[_i]}")
            _shapes[1]=${data_feats}/${train_set}/utt2num_samples
            _shapes[5]=${data_feats}/${valid_set}/utt2num_samples
            _on_cache+=("${_out}")
            _waveform+=("${_exp}")
        fi
        # shellcheck disable=SC2086  # the extra options and train_args hold several options
        printf '%s\n' --ngpu "${ngpu}" --config "${_c}" "${_common[@]}" "${_shapes[@]}" \
            "${_norm[@]}" --resume true --output_dir "${_out}" ${exp_extra[_i]} ${train_args} \
            "${_cached[@]}" > "${_exp}/logdir/train.args"
        _runs+=(--run "${_exp}/logdir/train.args" "${_exp}/train.log")
    done
    # The trainings shared out among --max_parallel_exps processes on the CPU (one on GPUs),
    # each taking the next one free; a jitter control waits for the learnt rate it copies.
    _jobs=1
    [ "${ngpu}" -gt 0 ] || _jobs=$((max_parallel_exps < ${#exp_dirs[@]} ? max_parallel_exps : ${#exp_dirs[@]}))
    _queue=${expdir}/logdir/train_queue
    rm -rf "${_queue}"
    mkdir -p "${_queue}"
    ${cuda_cmd} --gpu "${ngpu}" --num_threads "${num_threads}" \
        JOB=1:"${_jobs}" "${expdir}/logdir/train_queue.JOB.log" \
        ${python} -m espnet_ofa.bin.train_queue --entry "espnet2.bin.${task}_train" \
        --queue_dir "${_queue}" --learnt_model "${inference_model}" "${_runs[@]}" ||
        die "training failed: the logs are named above"
    if [ "${#_waveform[@]}" -gt 0 ]; then
        # The models trained on the cache, for the waveform (frontend: ofa), in one process.
        _log=${expdir}/logdir/to_waveform.log
        mkdir -p "${expdir}/logdir"
        ${python} -m espnet_ofa.bin.feature_cache to_waveform \
            --cached_dir "${_on_cache[@]}" --out_dir "${_waveform[@]}" > "${_log}" 2>&1 ||
            die "could not write the waveform models (see ${_log})"
    fi
    stage_end
fi

# ----------------------------------------------------------------------------- stages 12-13
if [ -z "${inference_tag}" ]; then
    inference_tag="decode_${task}"
    [ -z "${inference_config}" ] || inference_tag+="_$(basename "${inference_config}" .yaml)"
    inference_tag+="_$(echo "${inference_model}" | sed -e 's/\.pth$//' -e 's/\./_/g')"
fi

if want_stage 12; then
    stage_begin 12 "decoding ${test_sets} at frame periods ${frame_periods} ms (learnt rates too)"
    _sets=()
    for _d in ${test_sets}; do _sets+=("${data_feats}/${_d}"); done
    _infer=()
    [ -z "${inference_config}" ] || _infer=(--inference_config "${inference_config}")
    bg_max=1
    [ "${ngpu}" -gt 0 ] || bg_max=${max_parallel_exps}
    # decode_args EXP: the options that define EXP's decoding, its output dir included
    decode_args() {
        # shellcheck disable=SC2086  # frame_periods are separate arguments
        printf '%s\n' --task "${task}" --train_config "$1/config.yaml" \
            --model_file "$1/${inference_model}" --data_dirs "${_sets[@]}" \
            --out_dir "$1/${inference_tag}" --frame_periods ${frame_periods} --learned auto \
            --own_period "${decode_own_period}" "${_infer[@]}" --num_splits "${inference_nj}"
    }
    # decode_exps EXP...: decode the experiments one after another in one process per job
    # (ESPnet's start-up paid once); each logs into <exp>/<tag>/logdir/decode.JOB.log.
    # shellcheck disable=SC2329  # called through bg_share
    decode_exps() {
        local exp files=() plog
        for exp in "$@"; do files+=(--args_file "${exp}/${inference_tag}/logdir/decode.args"); done
        plog="${expdir}/logdir/${inference_tag}.$(basename "$1").JOB.log"
        log "  decoding $# in one process (log ${plog})"
        ${decode_cmd} --gpu "${ngpu}" --num_threads "${num_threads}" \
            JOB=1:"${inference_nj}" "${plog}" \
            ${python} -m espnet_ofa.bin.decode "${files[@]}" --ngpu "${ngpu}" --split JOB
    }
    _decoded=()
    for _exp in "${exp_dirs[@]}"; do
        _dir="${_exp}/${inference_tag}"
        [ -f "${_exp}/${inference_model}" ] || die "${_exp}/${inference_model} not found: run stage 11 (or set --inference_model)"
        mapfile -t _request < <(decode_args "${_exp}")
        if ${python} -m espnet_ofa.bin.decode "${_request[@]}" --done check; then
            log "  ${_dir}: decoded already (same model, sets, periods and options)"
            continue
        fi
        _decoded+=("${_exp}")
        rm -rf "${_dir}"
        mkdir -p "${_dir}/logdir"
        printf '%s\n' "${_request[@]}" > "${_dir}/logdir/decode.args"
        log "  ${_dir}: logs ${_dir}/logdir/decode.*.log"
    done
    bg_share decode_exps "${_decoded[@]}"
    bg_wait
    # Only now, with every job done (and merged), is a decoding marked finished.
    for _exp in "${_decoded[@]}"; do
        if [ "${inference_nj}" -gt 1 ]; then
            ${python} -m espnet_ofa.bin.decode --merge "${_exp}/${inference_tag}"/*/*/ \
                --num_splits "${inference_nj}"
        fi
        mapfile -t _request < <(decode_args "${_exp}")
        ${python} -m espnet_ofa.bin.decode "${_request[@]}" --done mark
    done
    stage_end
fi

if want_stage 13; then
    stage_begin 13 "scoring; ${results_md} and ${results_md%.md}.png"
    for _exp in "${exp_dirs[@]}"; do
        ${python} -m espnet_ofa.bin.recipe score_all --task "${task}" \
            --decode_dir "${_exp}/${inference_tag}" --data_root "${data_feats}" ${scoring_opts}
    done
    _notes=()
    [ ! -f data/README.txt ] || _notes=(--notes data/README.txt)
    ${python} -m espnet_ofa.bin.recipe results --exp_dirs "${exp_dirs[@]}" --out "${results_md}" \
        --plot "${results_md%.md}.png" --smoke "${smoke}" "${_notes[@]}"
    log "  results:"
    sed -n '/^|/p' "${results_md}" >&2
    stage_end
fi

# ----------------------------------------------------------------------------- stages 14-15
if want_stage 14; then
    if [ "${skip_packing}" = true ]; then
        log "Stage 14: skipped: packing (--skip_packing true)"
    else
        stage_begin 14 "packing ${task} models (OFA checkpoint inside; baselines without one) into <exp>/packed/model.zip"
        _results=()
        [ ! -f "${results_md}" ] || _results=(--results "${results_md}")
        for _exp in "${exp_dirs[@]}"; do
            ${python} -m espnet_ofa.bin.pack_model "${task}" --config "${_exp}/config.yaml" \
                --model "${_exp}/${inference_model}" --outpath "${_exp}/packed/model.zip" \
                "${_results[@]}"
        done
        stage_end
    fi
fi
if want_stage 15; then
    _packed=()
    for _exp in "${exp_dirs[@]}"; do
        _packed+=("${_exp}/packed/model.zip" "$(basename "$(pwd)")_$(basename "${_exp}")")
    done
    publish_stage 15 "${task} model" "${_packed[@]}"
fi
log "Successfully finished. [elapsed=$((SECONDS - _run_t0)) s]"
exit 0
}
