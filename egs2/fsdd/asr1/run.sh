#!/usr/bin/env bash
# FSDD connected digits: ASR on the frozen OFA model of ../ssl1 (run first when its model
# is missing). One pretrained model serves every frame period: a BLSTM-CTC downstream is
# trained at each of 20, 40, 60 and 80 ms, plus one that learns its period; each is
# decoded at 20-80 ms (the period set at run time) and the learnt one at its own period,
# on two test sets: the usual FSDD test takes, and a speaker never heard in training.
# The baselines, trained the same way: the downstream on the students of ../ssl1
# pretrained at 40 and 80 ms only (fixed-rate pooling, and CIF with the OFA model's alpha
# predictor), on the OFA model at 20 ms with its features average-pooled to 40 and 80 ms
# (the pooled rival: it pays the SSL model at 20 ms), on the teacher of ../ssl1 pooled the
# same way (the model one would take off the shelf), and on log-mel features (no SSL, the
# floor). One downstream trained at a period sampled per batch
# (conf/train_asr_ofa_sampled.yaml) is decoded at every period; the learnt rate has a
# control at its learnt period with the same probe jitter (trained after it).
# Training data: connected digits and single takes (local/data.sh), speed perturbation
# 0.9/1.0/1.1, SpecAugment (in the configs).
# Results: RESULTS.md (OFA against the baselines per period, with 95% bootstrap intervals
# that cover pretraining seeds x downstream seeds x test utterances, then each model at its
# own period) and RESULTS.png. With one pretraining seed (the default) the intervals do not
# cover pretraining; --ssl_seeds 3 pretrains every student 3 times (docs/evidence.md).
#
#   ./run.sh                                            # everything (stages 1-13)
#   ./run.sh --seeds 3                                  # 3 downstream seeds: mean and spread
#   ./run.sh --ssl_seeds 3 --seeds 2                    # 3 pretraining x 2 downstream seeds
#   ./run.sh --train_frame_periods ""                   # one model at the config's 40 ms
#   ./run.sh --stage 12 --frame_periods "30 50 70 90"   # decode again at other periods
#   ./run.sh --local_data_opts "--train_takes 10"       # less data, faster
set -euo pipefail

train_set=train
valid_set=dev
test_sets="test test_theo"

# The learnt-rate model first: it is the slowest (two probes per step), and the models
# train side by side, two at a time on a CPU. The log-mel floor last.
asr_configs="conf/train_asr_ofa_learned_rate.yaml conf/train_asr_ofa.yaml conf/train_asr_ofa_sampled.yaml conf/train_asr_logmel.yaml"
inference_config=conf/decode_asr.yaml

./asr.sh \
    --lang en \
    --train_set "${train_set}" \
    --valid_set "${valid_set}" \
    --test_sets "${test_sets}" \
    --token_type word \
    --ofa_model ../ssl1/exp/ssl_train_ofa_tiny/valid.loss.best.pth \
    --ssl_recipe ../ssl1 \
    --asr_configs "${asr_configs}" \
    --train_frame_periods "20 40 60 80" \
    --fixed_rate_periods "40 80" \
    --single_rate_periods "40 80" \
    --pooled_periods "40 80" \
    --teacher_pooled_periods "40 80" \
    --jitter_control true \
    --speed_perturb_factors "0.9 1.0 1.1" \
    --inference_config "${inference_config}" \
    --frame_periods "20 40 60 80" \
    "$@"
