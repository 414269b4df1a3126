#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stage 1 of librispeech_100/asr1: Kaldi data dirs from LibriSpeech as released
# ($LIBRISPEECH/LibriSpeech/<part>/<speaker>/<chapter>/*.flac + *.trans.txt; db.sh).
# Parts missing there are downloaded from OpenSLR (resource 12) unless --no_download.
# Options (passed to espnet_ofa.bin.recipe librispeech_data), e.g.
#   --set train_960=train-clean-100,train-clean-360,train-other-500 --set dev_clean=dev-clean
#   --max_utts 1000   first N utterances of each set (quick runs)
set -euo pipefail
# shellcheck source=../../../TEMPLATE/path.sh
. ./path.sh
# shellcheck source=../../../TEMPLATE/db.sh
. ./db.sh
exec python3 -m espnet_ofa.bin.recipe librispeech_data --librispeech "${LIBRISPEECH}" --data_dir data "$@"
