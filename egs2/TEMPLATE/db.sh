# shellcheck shell=bash
# Where the corpora are (sourced from a recipe directory, egs2/<corpus>/<task>1).
# Set a variable in the environment to use another copy; a recipe downloads its corpus
# into the default location when that is empty.
_espnet_ofa_root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)

# Free Spoken Digit Dataset: the directory holding recordings/. Default: the read-only
# copy next to the repository (../shared/data/fsdd) when there is one, else downloads/fsdd
# in the recipe directory (local/data.sh fetches the GitHub release archive there).
if [ -z "${FSDD:-}" ]; then
    if [ -d "${_espnet_ofa_root}/../shared/data/fsdd/recordings" ]; then
        FSDD=$(cd "${_espnet_ofa_root}/../shared/data/fsdd" && pwd)
    else
        FSDD=downloads/fsdd
    fi
fi
export FSDD

# LibriSpeech: the folder that holds LibriSpeech/<part>/ (ESPnet's convention). Missing parts
# are downloaded there from OpenSLR (resource 12) by local/data.sh.
LIBRISPEECH=${LIBRISPEECH:-downloads/librispeech}
# SLURP: the release folder holding dataset/slurp/*.jsonl and audio/slurp_real/ (downloaded
# by hand: github.com/pswietojanski/slurp and its scripts/download_audio.sh).
SLURP=${SLURP:-downloads/slurp}
# Common Voice (the English release CoVoST 2 was built on, holding en/clips/ and
# en/validated.tsv; downloaded by hand from commonvoice.mozilla.org), and the folder of
# covost_v2.en_de.tsv (downloaded there by local/data.sh when missing).
COMMONVOICE=${COMMONVOICE:-downloads/commonvoice}
COVOST2=${COVOST2:-downloads/covost2}
# speechocean762: the release folder holding WAVE/, train/, test/ and resource/; downloaded
# there from OpenSLR (resource 101) by local/data.sh when missing.
SPEECHOCEAN762=${SPEECHOCEAN762:-downloads/speechocean762}
export LIBRISPEECH SLURP COMMONVOICE COVOST2 SPEECHOCEAN762
unset _espnet_ofa_root
