#!/usr/bin/env bash
# GPU check of the paper-scale pretraining path (egs2/librispeech/ssl1), for a machine with a
# CUDA GPU: the --smoke true run with --ngpu 1 and bf16 autocast (use_amp) on a LibriSpeech
# look-alike built from ../shared/data. About 3-5 minutes; prints PASS or the failing step.
#
#   bash tools/gpu_check.sh                 # after `bash tools/install.sh`
#   WHEELS=/path/to/wheels bash tools/gpu_check.sh
#       # on a machine whose python3 already has torch/torchaudio but no internet: makes .venv
#       # with --system-site-packages and installs the carried wheels (ESPnet and its
#       # dependencies) and this package into it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

if [ ! -x .venv/bin/python ]; then
    [ -n "${WHEELS:-}" ] || { echo "gpu_check: no .venv; run tools/install.sh or set WHEELS" >&2; exit 1; }
    python3 -m venv --system-site-packages .venv
    .venv/bin/python -m pip install -q --no-index --no-deps "${WHEELS}"/*.whl
    .venv/bin/python -m pip install -q --no-index --no-deps --no-build-isolation -e .
fi
.venv/bin/python - <<'PY'
import torch
assert torch.cuda.is_available(), "gpu_check: torch sees no CUDA device"
print(f"gpu_check: {torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()}")
PY

work=$(mktemp -d)
trap 'rm -rf "${work}"' EXIT
.venv/bin/python tests/corpus_layouts.py librispeech "${work}/libri"
mkdir -p "${work}/egs2/librispeech"
ln -s "${repo}/egs2/TEMPLATE" "${work}/egs2/TEMPLATE"
cp -a egs2/librispeech/ssl1 "${work}/egs2/librispeech/"
rm -rf "${work}/egs2/librispeech/ssl1/"{data,dump,exp}

cd "${work}/egs2/librispeech/ssl1"
start=${SECONDS}
LIBRISPEECH="${work}/libri" timeout 600 ./run.sh --smoke true --ngpu 1 \
    --teacher_args "--use_amp true" --ssl_args "--use_amp true --max_epoch 3"
log=exp/ssl_train_ofa_tiny/train.log
grep -q "use_amp: true" exp/ssl_train_ofa_tiny/config.yaml || { echo "gpu_check: FAIL: AMP was off"; exit 1; }
grep -Eq "ngpu: 1" exp/ssl_train_ofa_tiny/config.yaml || { echo "gpu_check: FAIL: not trained on the GPU"; exit 1; }
[ -f exp/ssl_train_ofa_tiny/valid.loss.best.pth ] || { echo "gpu_check: FAIL: no model (see ${log})"; exit 1; }
grep "\[valid\]" "${log}" | tail -n 3 || true
echo "gpu_check: PASS: ssl1 smoke on the GPU with bf16 autocast in $((SECONDS - start)) s"
