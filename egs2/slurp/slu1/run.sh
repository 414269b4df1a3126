#!/usr/bin/env bash
# SLURP intent classification (scenario_action, 69 intents in the release) on the frozen OFA
# model of ../../librispeech/ssl1: a learned weighted sum of the OFA layers -> 2-layer BLSTM
# -> CTC over "<intent> <words>" (the intent is the first token and is what is scored),
# trained at 80 ms (intent tolerates long periods), plus one model that learns its period;
# decoded at 20-90 ms. RESULTS.md and RESULTS.png: intent accuracy against the period.
#
#   ./run.sh --stage 1 --stop_stage 13                 # the paper's scale (GPU: --ngpu 1)
#   ./run.sh --stage 1 --stop_stage 13 --smoke true    # tiny configs, small corpus, CPU; the
#                                                      # OFA model of ../../fsdd/ssl1
#   ./run.sh --ofa_model /path/valid.loss.best.pth     # any OFA model (or a packed .zip)
set -euo pipefail

smoke=false
run_options="smoke"
# shellcheck source-path=SCRIPTDIR source=scripts/run_options.sh
. scripts/run_options.sh  # takes these options out of "$@"; the rest is the pipeline's

if [ "${smoke}" = true ]; then
    ./slu.sh \
        --smoke true \
        --lang en --token_type word \
        --train_set train --valid_set devel --test_sets test \
        --ofa_model ../../fsdd/ssl1/exp/ssl_train_ofa_tiny/valid.loss.best.pth \
        --ssl_recipe ../../fsdd/ssl1 \
        --slu_configs "conf/smoke/train_slu_ofa_learned_rate.yaml conf/smoke/train_slu_ofa.yaml" \
        --inference_config conf/decode_slu.yaml \
        --frame_periods "20 40 90" \
        "$@"
else
    ./slu.sh \
        --lang en --token_type word \
        --train_set train --valid_set devel --test_sets "devel test" \
        --ofa_model ../../librispeech/ssl1/exp/ssl_train_ofa_distilhubert/valid.loss.best.pth \
        --ssl_recipe ../../librispeech/ssl1 \
        --slu_configs "conf/train_slu_ofa_learned_rate.yaml conf/train_slu_ofa.yaml" \
        --inference_config conf/decode_slu.yaml \
        --frame_periods "20 40 60 80 90" \
        --ngpu 1 --nj 16 --inference_nj 8 \
        "$@"
fi
