#!/usr/bin/env bash
# ESPnet-style ASR recipe template: speech recognition (espnet2.bin.asr_train)
# on an OFA SSL frontend. Stages 1-15 as in ESPnet's asr.sh; they live in
# scripts/s2t.sh, shared with the other tasks. Run with --help for the options.
exec "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/scripts/s2t.sh" --task asr "$@"
