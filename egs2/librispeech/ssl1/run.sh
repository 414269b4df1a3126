#!/usr/bin/env bash
# LibriSpeech: OFA pretraining of a DistilHuBERT-size student (2 x 768-d Transformer layers,
# heads predicting HuBERT Base layers 4/8/12) over frame periods of 20-90 ms, distilled from
# HuBERT Base on LibriSpeech 960 h (the paper's setting). Pseudo boundaries come from
# k-means units of HuBERT's layer 6, fitted on a subset.
#
#   ./run.sh                                   # the paper's scale: needs a GPU (--ngpu 1)
#   ./run.sh --teacher /path/hubert_base_ls960.pt   # offline: a local HuBERT Base checkpoint
#   ./run.sh --train_parts train-clean-100     # 100 h instead of 960 h
#   ./run.sh --smoke true                      # tiny configs on a small corpus, CPU, minutes
#
# --smoke true runs every stage the same way with the configs of conf/smoke/ and, instead
# of HuBERT Base, a tiny HuBERT teacher trained here first (stages 5-7).
# The model (exp/ssl_<config>/valid.loss.best.pth, packed.zip) is the frontend of
# ../../librispeech_100/asr1.
set -euo pipefail

smoke=false
train_parts=""   # default: the 960 h (train-clean-100 only with --smoke true)
run_options="smoke train_parts"
# shellcheck source-path=SCRIPTDIR source=scripts/run_options.sh
. scripts/run_options.sh  # takes these options out of "$@"; the rest is the pipeline's

if [ -z "${train_parts}" ]; then
    train_parts="train-clean-100 train-clean-360 train-other-500"
    [ "${smoke}" != true ] || train_parts=train-clean-100
fi
train_set=train
valid_set=dev_clean
data_opts="--set ${train_set}=${train_parts// /,} --set ${valid_set}=dev-clean"

if [ "${smoke}" = true ]; then
    ./ssl.sh \
        --train_set "${train_set}" --valid_set "${valid_set}" \
        --local_data_opts "${data_opts} --max_utts 200" \
        --teacher_config conf/smoke/train_hubert_tiny.yaml --n_units 20 \
        --segment_feature teacher --segment_opts "--n_clusters 10 --min_duration 2" \
        --ssl_config conf/smoke/train_ofa_tiny.yaml \
        "$@"
else
    ./ssl.sh \
        --train_set "${train_set}" --valid_set "${valid_set}" \
        --local_data_opts "${data_opts}" \
        --teacher HUBERT_BASE \
        --segment_feature teacher --segment_layer 6 \
        --segment_opts "--n_clusters 100 --min_duration 2 --max_utts_for_kmeans 20000" \
        --ssl_config conf/train_ofa_distilhubert.yaml \
        --ngpu 1 --nj 16 \
        "$@"
fi
