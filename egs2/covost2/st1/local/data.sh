#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stage 1 of covost2/st1: data/{train,dev,test} for English->German from CoVoST 2 as
# distributed: the table $COVOST2/covost_v2.en_de.tsv (downloaded when missing) joined with
# the Common Voice English release $COMMONVOICE/en/{clips/*.mp3,validated.tsv} (db.sh;
# Common Voice is downloaded by hand after accepting its terms). text = German, src_text =
# English. Options (espnet_ofa.bin.recipe covost2_data): --max_utts N, --no_download.
set -euo pipefail
# shellcheck source=../../../TEMPLATE/path.sh
. ./path.sh
# shellcheck source=../../../TEMPLATE/db.sh
. ./db.sh
exec python3 -m espnet_ofa.bin.recipe covost2_data --commonvoice "${COMMONVOICE}" \
    --covost2 "${COVOST2}" --data_dir data "$@"
