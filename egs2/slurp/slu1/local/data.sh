#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stage 1 of slurp/slu1: data/{train,devel,test} from the SLURP release as distributed
# ($SLURP/dataset/slurp/*.jsonl, $SLURP/audio/slurp_real/ and slurp_synth/; db.sh).
# text = "<scenario>_<action> <sentence>"; headset and far-field recordings both used.
# SLURP is downloaded by hand (github.com/pswietojanski/slurp: its dataset/ folder and
# scripts/download_audio.sh). Options (espnet_ofa.bin.recipe slurp_data), e.g.
#   --use_synthetic false   --train_recordings headset   --max_utts 1000
set -euo pipefail
# shellcheck source=../../../TEMPLATE/path.sh
. ./path.sh
# shellcheck source=../../../TEMPLATE/db.sh
. ./db.sh
exec python3 -m espnet_ofa.bin.recipe slurp_data --slurp "${SLURP}" --data_dir data "$@"
