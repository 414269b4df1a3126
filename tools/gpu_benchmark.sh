#!/usr/bin/env bash
# GPU figures of issue 10 (waveform fronts, torch.compile, bf16), in under 5 minutes on one
# H200. Not run by CI or the tests; a session with a GPU runs it and copies the tables
# into README.md ("Benchmarks") and docs/fronts.md.
#
#   bash tools/gpu_benchmark.sh [OUTDIR]      # default exp/gpu_benchmark
#
# Writes OUTDIR/<name>.txt (the printed tables) and OUTDIR/<name>.json (the rows) for:
#   fronts_2l          2-layer (DistilHuBERT-size) student, cnn vs light vs mel, eager
#   fronts_2l_compile  the same with torch.compile (dynamic shapes)
#   fronts_12l         12-layer student, eager
# Each: bf16 autocast, B=64 x 15 s, periods 20/40/60/90 ms, median of 10, interleaved.
# PYTHON picks the interpreter (default .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-exp/gpu_benchmark}
python=${PYTHON:-}
if [[ -z "${python}" ]]; then
    if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
"${python}" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this script needs a GPU')"
mkdir -p "${out}"
common=(--device cuda --dtype bfloat16 --batch 64 --seconds 15 --periods 20 40 60 90
        --repeats 10 --front cnn light mel)
run() {
    local name=$1; shift
    echo "== ${name}: $*"
    "${python}" -m espnet_ofa.bin.benchmark_model "${common[@]}" "$@" \
        --json "${out}/${name}.json" | tee "${out}/${name}.txt"
}
start=${SECONDS}
run fronts_2l --num_layers 2
run fronts_2l_compile --num_layers 2 --compile
run fronts_12l --num_layers 12
echo "done in $((SECONDS - start)) s; results in ${out}"
