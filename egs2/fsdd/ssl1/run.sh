#!/usr/bin/env bash
# FSDD: OFA pretraining of a tiny student on the Free Spoken Digit Dataset, offline:
# the teacher is a tiny HuBERT trained here first (hubert_train on MFCC k-means units);
# pass --teacher HUBERT_BASE (or any teacher source) to distil from another one.
# The model (exp/ssl_train_ofa_tiny/valid.loss.best.pth) is the frontend of ../asr1,
# ../slu1 and ../st1, which run this recipe when it is missing. The baselines, pretrained
# at one period only with the same teacher, boundaries, data and epochs, at 40 and 80 ms:
# fixed-rate students (average pooling: exp/ssl_train_ofa_tiny_fixed40, _fixed80) and
# single-period CIF students (the OFA config and alpha predictor, the rate held at that
# period: exp/ssl_train_ofa_tiny_cif40, _cif80), trained in stage 10 beside the OFA model.
# All five at once (--max_parallel_exps 5): on 2 cores no core idles while the last one
# trains alone. --ssl_seeds 3 pretrains each of them with 3 seeds (<exp>_seed1, _seed2).
set -euo pipefail

train_set=train
valid_set=dev

./ssl.sh \
    --train_set "${train_set}" \
    --valid_set "${valid_set}" \
    --teacher_config conf/train_hubert_tiny.yaml \
    --n_units 50 \
    --segment_feature teacher \
    --ssl_config conf/train_ofa_tiny.yaml \
    --fixed_rate_periods "40 80" \
    --single_rate_periods "40 80" \
    --local_data_opts "--dev_takes 2" \
    --max_parallel_exps 5 \
    "$@"
