# shellcheck shell=bash
# Data stages 1-4, shared by scripts/s2t.sh (asr/slu/st) and ssl.sh (sourced): the
# pipelines call data_stages, which runs those of stages 1-4 that want_stage selects.
#
# Uses: train_set valid_set test_sets local_data_opts speed_perturb_factors fs
#       min_wav_duration max_wav_duration dumpdir data_feats nj python train_cmd text_tables
# (text_tables: the tables besides wav.scp each set must have, e.g. "text").
# Commands and option strings are split into words on purpose, and the variables above
# are the caller's:
# shellcheck disable=SC2086,SC2154

# Stage 1: the recipe's own data preparation (local/data.sh) writes data/<set>.
data_prep_stage() {
    [ -x local/data.sh ] || die "local/data.sh not found (or not executable) in ${PWD}"
    local/data.sh ${local_data_opts}
}

# Stage 2: speed-perturbed copy of the training set (data/<train>_sp).
speed_perturb_stage() {
    local factors=$1
    if [ -z "${factors}" ]; then
        log "  skipped: no --speed_perturb_factors"
        return
    fi
    ${train_cmd} --num_threads 1 "data/${train_set}_sp/log/speed_perturb.log" \
        ${python} -m espnet_ofa.bin.recipe speed_perturb --src "data/${train_set}" \
        --dst "data/${train_set}_sp" --factors ${factors}
}

# Stage 3: check each data dir (a bad file stops here with its name and line), resample
# to ${fs} and dump: train/valid to ${dumpdir}/raw/org/<set>, tests to ${dumpdir}/raw/<set>.
# The sets share --nj processes (one start-up for several sets).
format_stage() {
    # shellcheck disable=SC2034  # read by bg_share
    local bg_max=${nj}
    # shellcheck disable=SC2086  # test_sets holds several names
    bg_share format_sets "${train_set}" "${valid_set}" ${test_sets}
    bg_wait
}

# format_sets DSET...: stage 3 for these sets in one process; log format.<first set>.log.
# shellcheck disable=SC2329  # called through bg_share
format_sets() {
    local dset dsts=() srcs=()
    for dset in "$@"; do
        srcs+=("data/${dset}")
        if [ "${dset}" = "${train_set}" ] || [ "${dset}" = "${valid_set}" ]; then
            dsts+=("${dumpdir}/raw/org/${dset}")
        else
            dsts+=("${dumpdir}/raw/${dset}")
        fi
    done
    # shellcheck disable=SC2086  # text_tables holds several names
    ${train_cmd} --num_threads 1 "${dumpdir}/raw/log/format.$1.log" \
        ${python} -m espnet_ofa.bin.recipe format --src "${srcs[@]}" --dst "${dsts[@]}" \
        --fs "${fs}" --required wav.scp ${text_tables}
}

# Stage 4: drop too short/long utterances (and empty texts) from train and valid.
filter_stage() {
    local dset
    for dset in "${train_set}" "${valid_set}"; do
        ${train_cmd} --num_threads 1 "${dumpdir}/raw/log/filter.${dset}.log" \
            ${python} -m espnet_ofa.bin.recipe filter --src "${dumpdir}/raw/org/${dset}" \
            --dst "${dumpdir}/raw/${dset}" --fs "${fs}" --min "${min_wav_duration}" \
            --max "${max_wav_duration}" --text_files ${text_tables}
    done
}

# data_stages: stages 1-4, each with its banner; then train_set names the set the later
# stages train on (<train_set>_sp with --speed_perturb_factors).
data_stages() {
    if want_stage 1; then
        stage_begin 1 "data preparation: local/data.sh ${local_data_opts}"
        data_prep_stage
        stage_end
    fi
    if want_stage 2; then
        stage_begin 2 "speed perturbation (${speed_perturb_factors:-none})"
        speed_perturb_stage "${speed_perturb_factors}"
        stage_end
    fi
    [ -z "${speed_perturb_factors}" ] || train_set="${train_set}_sp"
    if want_stage 3; then
        stage_begin 3 "format wav.scp: check the data dirs, resample to ${fs}, dump to ${data_feats}"
        format_stage
        stage_end
    fi
    if want_stage 4; then
        stage_begin 4 "filter: ${min_wav_duration} s <= duration <= ${max_wav_duration} s"
        filter_stage
        stage_end
    fi
}
