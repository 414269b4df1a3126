#!/usr/bin/env bash
# FSDD intents: a caller answers a phone menu with one digit; 10 intents (a fixed,
# synthetic mapping from the digit; see local/data.sh). SLU on the frozen OFA model of
# ../ssl1 (run first when missing), trained at 80 ms, decoded at 20-80 ms on the usual
# FSDD test takes and on a speaker never seen in training. Baselines: the same downstream
# on the fixed-rate student of ../ssl1 at 80 ms and on log-mel features (no SSL).
# Results: RESULTS.md/.png.
set -euo pipefail

train_set=train
valid_set=dev
test_sets="test test_theo"

./slu.sh \
    --lang en \
    --train_set "${train_set}" \
    --valid_set "${valid_set}" \
    --test_sets "${test_sets}" \
    --token_type word \
    --ofa_model ../ssl1/exp/ssl_train_ofa_tiny/valid.loss.best.pth \
    --ssl_recipe ../ssl1 \
    --slu_configs "conf/train_slu_ofa.yaml conf/train_slu_logmel.yaml" \
    --fixed_rate_periods 80 \
    --inference_config conf/decode_slu.yaml \
    --frame_periods "20 40 60 80" \
    --local_data_opts "--train_takes 20" \
    "$@"
