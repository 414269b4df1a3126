#!/usr/bin/env bash
# ESPnet-style ST recipe template: speech translation (espnet2.bin.st_train; text = target, src_text = source)
# on an OFA SSL frontend. Stages 1-15 as in ESPnet's st.sh; they live in
# scripts/s2t.sh, shared with the other tasks. Run with --help for the options.
exec "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/scripts/s2t.sh" --task st "$@"
