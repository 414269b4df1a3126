#!/usr/bin/env bash
# ESPnet-style SLU recipe template: spoken language understanding (espnet2.bin.slu_train; text = 'intent words...')
# on an OFA SSL frontend. Stages 1-15 as in ESPnet's slu.sh; they live in
# scripts/s2t.sh, shared with the other tasks. Run with --help for the options.
exec "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/scripts/s2t.sh" --task slu "$@"
