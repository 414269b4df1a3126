#!/usr/bin/env bash
# LibriSpeech 100 h ASR on the frozen OFA model of ../../librispeech/ssl1 (run first when its
# model is missing): a learned weighted sum of the OFA layers -> 2-layer BLSTM -> character
# CTC (SUPERB's ASR downstream), trained at 40 ms, plus one model that learns its frame
# period. Every model is decoded at 20-90 ms (the period set at run time) and the learnt
# one at its own period, on dev-clean/dev-other/test-clean/test-other; RESULTS.md and
# RESULTS.png give WER against the period and the compute.
#
#   ./run.sh --stage 1 --stop_stage 13                 # the paper's scale (GPU: --ngpu 1)
#   ./run.sh --asr_configs conf/train_asr_ofa_conformer.yaml --token_type bpe --nbpe 300
#                                                      # Conformer-CTC/attention on BPE units
#   ./run.sh --train_frame_periods "20 40 60 80 90"    # one model per period (grid search)
#   ./run.sh --stage 1 --stop_stage 13 --smoke true    # tiny configs, small corpus, CPU
#
# Characters at 80-90 ms: LibriSpeech speaks ~15 characters/s, more than the 11-12 frames/s
# of a 90 ms period, so character CTC cannot emit every character there; BPE units can.
set -euo pipefail

smoke=false
run_options="smoke"
# shellcheck source-path=SCRIPTDIR source=scripts/run_options.sh
. scripts/run_options.sh  # takes these options out of "$@"; the rest is the pipeline's

train_set=train_clean_100
valid_set=dev
test_sets="dev_clean dev_other test_clean test_other"
data_opts="--set train_clean_100=train-clean-100 --set dev=dev-clean,dev-other"
data_opts+=" --set dev_clean=dev-clean --set dev_other=dev-other"
data_opts+=" --set test_clean=test-clean --set test_other=test-other"

if [ "${smoke}" = true ]; then
    # The small test corpus has no *-other parts.
    test_sets="test_clean"
    ./asr.sh \
        --smoke true \
        --lang en --token_type char \
        --train_set "${train_set}" --valid_set dev_clean --test_sets "${test_sets}" \
        --local_data_opts "--set train_clean_100=train-clean-100 --set dev_clean=dev-clean --set test_clean=test-clean" \
        --ofa_model ../../librispeech/ssl1/exp/ssl_train_ofa_tiny/valid.loss.best.pth \
        --ssl_recipe ../../librispeech/ssl1 --ssl_recipe_opts "--smoke true" \
        --asr_configs "conf/smoke/train_asr_ofa_learned_rate.yaml conf/smoke/train_asr_ofa_blstm.yaml" \
        --inference_config conf/decode_asr.yaml \
        --frame_periods "20 40 90" \
        "$@"
else
    ./asr.sh \
        --lang en --token_type char \
        --train_set "${train_set}" --valid_set "${valid_set}" --test_sets "${test_sets}" \
        --local_data_opts "${data_opts}" \
        --ofa_model ../../librispeech/ssl1/exp/ssl_train_ofa_distilhubert/valid.loss.best.pth \
        --ssl_recipe ../../librispeech/ssl1 \
        --asr_configs "conf/train_asr_ofa_learned_rate.yaml conf/train_asr_ofa_blstm.yaml" \
        --inference_config conf/decode_asr.yaml \
        --frame_periods "20 40 60 80 90" \
        --ngpu 1 --nj 16 --inference_nj 8 \
        "$@"
fi
