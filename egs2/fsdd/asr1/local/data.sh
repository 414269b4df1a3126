#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stage 1 of fsdd/asr1: data/{train,dev,test,test_<held-out speaker>} from FSDD:
# connected-digit utterances: 2-7 takes of one speaker joined with short silences
# (text = "three one four"); the train set also holds every train take on its own.
# Splits: takes 0-4 test, 5-9 dev, 10-49 train, every take of one held-out speaker in
# test_<speaker>. FSDD is found via db.sh ($FSDD) and downloaded there when missing.
# Options (passed to espnet_ofa.bin.recipe fsdd_data; --help lists them), e.g.
#   --train_takes 10   first 10 train takes per speaker and digit (default all 40)
#   --train_single_takes false   connected utterances only in train
#   --heldout_speaker theo   --speakers george,jackson   --seed 0
set -euo pipefail
# shellcheck source=../../../TEMPLATE/path.sh
. ./path.sh
# shellcheck source=../../../TEMPLATE/db.sh
. ./db.sh
exec python3 -m espnet_ofa.bin.recipe fsdd_data --task asr --fsdd "${FSDD}" --data_dir data \
    --train_single_takes true "$@"
