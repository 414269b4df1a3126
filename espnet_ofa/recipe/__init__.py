"""The logic of the recipes (egs2/TEMPLATE, egs2/fsdd), called by thin shell stages.

- :mod:`.fsdd`: find, download and split the Free Spoken Digit Dataset;
- :mod:`.prepare`: Kaldi data dirs for ssl/asr/slu/st (connected digits, intents,
  synthetic translations);
- :mod:`.format`: speed perturbation, resampling/dumping, length filtering;
- :mod:`.tokens`: ESPnet token lists (word, char, sentencepiece);
- :mod:`.units`: MFCC k-means labels for training a HuBERT teacher with ``hubert_train``;
- :mod:`.experiments`: the experiments of a downstream recipe (OFA per period, fixed-rate
  students, non-OFA floors, seeds) and their feature-statistics keys;
- :mod:`.decode`: decoding at several OFA frame periods with one model load (baselines as
  trained);
- :mod:`.scoring`: WER/CER, intent accuracy, BLEU;
- :mod:`.bootstrap`: paired bootstrap over utterances of a difference in error rate;
- :mod:`.results`: RESULTS.md (OFA against the baselines first) and its plot.

CLIs: ``python -m espnet_ofa.bin.recipe`` (no ESPnet import) and ``python -m
espnet_ofa.bin.decode``.
"""
