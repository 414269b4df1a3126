#!/usr/bin/env bash
# CoVoST 2 English->German speech translation (the SUPERB ST task) on the frozen OFA model
# of ../../librispeech/ssl1: a learned weighted sum of the OFA layers -> Conformer encoder
# -> Transformer decoder on German BPE units, with CTC on the English source (BPE too),
# trained at 40 ms, plus one model that learns its period; decoded at 20-90 ms. BLEU and
# chrF with sacrebleu on detokenised, case-sensitive output, as CoVoST 2 reports them.
#
#   ./run.sh --stage 1 --stop_stage 13                 # the paper's scale (GPU: --ngpu 1)
#   ./run.sh --stage 1 --stop_stage 13 --smoke true    # tiny configs, small corpus, CPU; the
#                                                      # OFA model of ../../fsdd/ssl1
set -euo pipefail

smoke=false
run_options="smoke"
# shellcheck source-path=SCRIPTDIR source=scripts/run_options.sh
. scripts/run_options.sh  # takes these options out of "$@"; the rest is the pipeline's

if [ "${smoke}" = true ]; then
    ./st.sh \
        --smoke true \
        --src_lang en --tgt_lang de \
        --src_token_type bpe --src_nbpe 30 --token_type bpe --nbpe 30 --nbpe_fit_data true \
        --train_set train --valid_set dev --test_sets test \
        --ofa_model ../../fsdd/ssl1/exp/ssl_train_ofa_tiny/valid.loss.best.pth \
        --ssl_recipe ../../fsdd/ssl1 \
        --st_configs "conf/smoke/train_st_ofa_learned_rate.yaml conf/smoke/train_st_ofa.yaml" \
        --inference_config conf/decode_st.yaml \
        --frame_periods "20 40 90" \
        "$@"
else
    ./st.sh \
        --src_lang en --tgt_lang de \
        --src_token_type bpe --src_nbpe 1000 --token_type bpe --nbpe 1000 \
        --train_set train --valid_set dev --test_sets "dev test" \
        --ofa_model ../../librispeech/ssl1/exp/ssl_train_ofa_distilhubert/valid.loss.best.pth \
        --ssl_recipe ../../librispeech/ssl1 \
        --st_configs "conf/train_st_ofa_learned_rate.yaml conf/train_st_ofa.yaml" \
        --inference_config conf/decode_st.yaml \
        --frame_periods "20 40 60 80 90" \
        --max_wav_duration 15 \
        --ngpu 1 --nj 16 --inference_nj 8 \
        "$@"
fi
