#!/usr/bin/env bash
# speechocean762: two tasks on the frozen OFA model of ../ssl1 (run first when its model is
# missing), each with the same stages of asr.sh (ESPnet's numbering, scripts/s2t.sh):
#   word  ASR: BPE units (100; characters cannot be emitted at 90 ms by CTC in 5 % of the
#         training sentences, docs/speechocean762.md), scored as WER: exp/word, RESULTS.md
#   phone recognition (SUPERB's PR): the 39 ARPAbet phones of resource/text-phone without
#         stress and position tags, scored as PER: exp/phone, RESULTS_phone.md
# Per task: a downstream (weighted sum of the OFA layers -> 2 BLSTM layers -> CTC) trained
# at each period of 20-90 ms in 10 ms steps, one that learns its period (and its control:
# the same probe jitter at the learnt period held fixed), one trained at a period sampled
# per batch (decoded at every period), and the baselines at 40 and 80 ms: the same
# downstream on the students of ../ssl1 pretrained at one period (fixed-rate pooling and
# single-period CIF), on the OFA model at 20 ms with its features pooled (the pooled
# rival), on the HuBERT teacher of ../ssl1 pooled the same way, and on log-mel features
# (no SSL: the floor). Each model is decoded at the period
# it was trained at, by the CTC best path, on test: 125 speakers no model heard (dev is a
# speaker-disjoint part of train).
#
#   ./run.sh                                   # both tasks, everything (stages 1-13)
#   ./run.sh --tasks phone                     # one task
#   ./run.sh --smoke true                      # tiny configs on ../shared/data/speechocean762_mini
#   ./run.sh --seeds 3                         # 3 downstream seeds (asr.sh options pass through)
#   ./run.sh --stage 12 --frame_periods "25 45"  # decode again at other periods
set -euo pipefail

smoke=false
tasks="word phone"
run_options="smoke tasks"
# shellcheck source-path=SCRIPTDIR source=scripts/run_options.sh
. scripts/run_options.sh  # takes these options out of "$@"; the rest is the pipeline's

periods="20 30 40 50 60 70 80 90"
configs="conf/train_asr_ofa_learned_rate.yaml conf/train_asr_ofa.yaml conf/train_asr_ofa_sampled.yaml conf/train_asr_logmel.yaml"
ofa_model=../ssl1/exp/ssl_train_ofa_small_mel/valid.loss.best.pth
fixed_rate_periods="40 80"
baselines=(--single_rate_periods "40 80" --pooled_periods "40 80" --teacher_pooled_periods "40 80"
    --jitter_control true)
nbpe=100
opts=(--ssl_recipe ../ssl1 --inference_config conf/decode_asr.yaml --max_parallel_exps 2
    --decode_own_period true)
if [ "${smoke}" = true ]; then
    if [ -z "${SPEECHOCEAN762:-}" ]; then
        SPEECHOCEAN762=$(dirname "$(readlink -f db.sh)")/../../../shared/data/speechocean762_mini
        export SPEECHOCEAN762
    fi
    # The same stages on a few utterances: two training periods, one fixed-rate student
    # (the other baselines and the sampled period run in the FSDD recipe's tests).
    periods="40 80"
    configs=${configs/ conf\/train_asr_ofa_sampled.yaml/}
    configs=${configs//conf\//conf\/smoke\/}
    ofa_model=../ssl1/exp/ssl_train_ofa_tiny/valid.loss.best.pth
    fixed_rate_periods="80"
    baselines=()
    nbpe=40
    opts+=(--smoke true --ssl_recipe_opts "--smoke true" --nj 1
        --local_data_opts "--dev_speakers 2 --max_utts 24 --no_download")
fi

for task in ${tasks}; do
    case "${task}" in
        word) data=(--train_set train --valid_set dev --test_sets test)
              units=(--lang en --token_type bpe --nbpe "${nbpe}")
              scoring=() results=RESULTS.md ;;
        phone) data=(--train_set train_phone --valid_set dev_phone --test_sets test_phone)
               units=(--lang en_phone --token_type word)
               scoring=(--scoring_opts "--metric PER") results=RESULTS_phone.md ;;
        *) echo "run.sh: --tasks takes word and/or phone, got '${task}'" >&2; exit 1 ;;
    esac
    ./asr.sh "${data[@]}" "${units[@]}" "${scoring[@]}" "${opts[@]}" \
        --expdir "exp/${task}" --results_md "${results}" \
        --ofa_model "${ofa_model}" --asr_configs "${configs}" \
        --train_frame_periods "${periods}" --frame_periods "${periods}" \
        --fixed_rate_periods "${fixed_rate_periods}" "${baselines[@]}" \
        "$@"
done
