#!/usr/bin/env bash
# GPU benchmarks, in under 5 minutes on one H100/H200. Not run by CI or the tests; a session
# with a GPU runs it and copies the tables into docs/results/benchmarks.md (with the device).
#
#   bash tools/gpu_benchmark.sh [OUTDIR]      # default exp/gpu_benchmark
#   SYSTEM_MODEL=packed.zip SYSTEM_DATA=dump/raw/test bash tools/gpu_benchmark.sh
#
# Writes OUTDIR/<name>.txt (the printed tables) and OUTDIR/<name>.json (the rows) for:
#   fronts_2l          2-layer (DistilHuBERT-size) student, cnn vs light vs mel, eager
#   fronts_2l_compile  the same with torch.compile (dynamic shapes)
#   fronts_12l         12-layer student, eager
#     each: bf16 autocast, B=64 x 15 s, periods 20/40/60/90 ms, median of 10, interleaved
#   cif, cif_compile   rate_alpha + CIF forward+backward against one Transformer layer
#                      (B=64 x 750 frames x 768 channels), eager and compiled
#   system             (when SYSTEM_MODEL and SYSTEM_DATA are set) the whole packed
#                      ASR/SLU/ST system per period: RTF, its frontend/encoder/decoding
#                      parts and peak memory, batch 1 and 16, CTC best path where
#                      SYSTEM_SEARCH=ctc_greedy (default: the beam search)
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
for compiled in "" --compile; do
    name=cif${compiled:+_compile}
    echo "== ${name}"
    # shellcheck disable=SC2086  # an empty option is no option
    "${python}" -m espnet_ofa.bin.benchmark_cif --device cuda --batch 64 --frames 750 \
        --channels 768 --repeats 20 --loop-repeats 1 ${compiled} | tee "${out}/${name}.txt"
done
if [[ -n "${SYSTEM_MODEL:-}" ]]; then
    search=()
    [[ "${SYSTEM_SEARCH:-beam}" != ctc_greedy ]] || search=(--ctc_greedy)
    echo "== system: ${SYSTEM_MODEL}"
    "${python}" -m espnet_ofa.bin.benchmark_system --model "${SYSTEM_MODEL}" \
        --data_dir "${SYSTEM_DATA:?set SYSTEM_DATA to a data dir with wav.scp}" --num_utts 64 \
        --periods 20 40 60 80 90 --batch_sizes 1 16 --repeats 2 --device cuda "${search[@]}" \
        --json "${out}/system.json" | tee "${out}/system.txt"
fi
echo "done in $((SECONDS - start)) s; results in ${out}"
