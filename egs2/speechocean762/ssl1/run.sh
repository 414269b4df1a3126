#!/usr/bin/env bash
# speechocean762: OFA pretraining on ~6 h of read English (children and adults, Mandarin
# L1), offline on a CPU. The teacher is a small HuBERT trained here from scratch with
# ESPnet's hubert_train (iteration 0 of ESPnet's HuBERT recipe: it predicts MFCC k-means
# units) on data/pretrain = the train speakers' audio, labelled or not, never a test or dev
# voice. Then pseudo boundaries (k-means units of the teacher's last layer), the OFA student
# over 20-90 ms with the mel front (log-mel + two convolutions: on the unseen test speakers
# it beat the CNN front copied from the teacher, and costs far less; conf/train_ofa_small.yaml
# is the CNN student, docs/speechocean762.md), and the students pretrained at one period only
# (same data and steps) at 40 and 80 ms: fixed-rate (average pooling) and single-period CIF
# (the OFA config and alpha predictor, the rate held at that period):
# exp/ssl_train_ofa_small_mel{,_fixed40,_fixed80,_cif40,_cif80}, three at a time (on 2 cores
# no core idles; fewer hold memory at once).
# The model is the frontend of ../asr1, which runs this recipe when it is missing.
#
#   ./run.sh                          # the full recipe (docs/speechocean762.md: compute)
#   ./run.sh --smoke true             # tiny configs on ../shared/data/speechocean762_mini
#   ./run.sh --stage 8                # again from the pseudo boundaries (stages resume)
#
# --smoke true runs every stage the same way with the configs of conf/smoke/ on the small
# copy of the corpus next to the repository (unless SPEECHOCEAN762 is set).
set -euo pipefail

smoke=false
run_options="smoke"
# shellcheck source-path=SCRIPTDIR source=scripts/run_options.sh
. scripts/run_options.sh  # takes these options out of "$@"; the rest is the pipeline's

if [ "${smoke}" = true ]; then
    if [ -z "${SPEECHOCEAN762:-}" ]; then
        SPEECHOCEAN762=$(dirname "$(readlink -f db.sh)")/../../../shared/data/speechocean762_mini
        export SPEECHOCEAN762
    fi
    ./ssl.sh \
        --train_set pretrain --valid_set dev \
        --local_data_opts "--dev_speakers 2 --max_utts 48 --no_download" \
        --teacher_config conf/smoke/train_hubert_tiny.yaml --n_units 20 \
        --segment_feature teacher --segment_opts "--n_clusters 10 --min_duration 2" \
        --ssl_config conf/smoke/train_ofa_tiny.yaml \
        --fixed_rate_periods "80" \
        --max_parallel_exps 2 \
        "$@"
else
    ./ssl.sh \
        --train_set pretrain --valid_set dev \
        --teacher_config conf/train_hubert_small.yaml --n_units 100 \
        --segment_feature teacher \
        --ssl_config conf/train_ofa_small_mel.yaml \
        --fixed_rate_periods "40 80" \
        --single_rate_periods "40 80" \
        --max_parallel_exps 3 \
        "$@"
fi
