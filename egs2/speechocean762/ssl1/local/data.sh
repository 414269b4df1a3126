#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stage 1: data dirs from speechocean762 as released ($SPEECHOCEAN762, db.sh; downloaded
# there from OpenSLR resource 101 when missing): data/{train,dev,test} (words),
# data/{train,dev,test}_phone (phones without stress and position tags), data/pretrain
# (train + the unlabelled recordings of train speakers; never a test or dev voice).
# dev = a speaker-disjoint part of the official train set.
# Options (passed to espnet_ofa.bin.recipe speechocean762_data; --help lists them), e.g.
#   --dev_speakers 12   train speakers held out as dev (spread over the ages)
#   --max_utts 200      first N utterances of train, dev and test (quick runs)
#   --no_download       fail instead of downloading a missing corpus
set -euo pipefail
# shellcheck source=../../../TEMPLATE/path.sh
. ./path.sh
# shellcheck source=../../../TEMPLATE/db.sh
. ./db.sh
exec python3 -m espnet_ofa.bin.recipe speechocean762_data --speechocean762 "${SPEECHOCEAN762}" \
    --data_dir data "$@"
