#!/usr/bin/env bash
# FSDD speech translation: English connected digits -> German digit words. The audio is
# real (FSDD takes joined into utterances), the translations are synthetic word-by-word
# digit names (see local/data.sh and RESULTS.md). ST on the frozen OFA model of ../ssl1
# (run first when missing), trained at 40 ms, decoded at 20-80 ms; BLEU with sacrebleu.
# Baselines: the same model on the fixed-rate student of ../ssl1 at 40 ms and on
# log-mel features (no SSL).
set -euo pipefail

train_set=train
valid_set=dev
test_sets="test test_theo"

./st.sh \
    --src_lang en \
    --tgt_lang de \
    --train_set "${train_set}" \
    --valid_set "${valid_set}" \
    --test_sets "${test_sets}" \
    --src_token_type word \
    --token_type word \
    --ofa_model ../ssl1/exp/ssl_train_ofa_tiny/valid.loss.best.pth \
    --ssl_recipe ../ssl1 \
    --st_configs "conf/train_st_ofa.yaml conf/train_st_logmel.yaml" \
    --fixed_rate_periods 40 \
    --inference_config conf/decode_st.yaml \
    --frame_periods "20 40 60 80" \
    "$@"
