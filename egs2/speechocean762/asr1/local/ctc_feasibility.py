#!/usr/bin/env python3
"""Which word units can CTC emit at every frame period? Prints, for characters, BPE
vocabularies and phones, the units per second of speech and the share of training
utterances whose label sequence needs more frames than the frontend gives at 20-90 ms
(CTC needs one frame per label plus a blank between two equal labels).

    python local/ctc_feasibility.py data      # after stage 1 (data/train, data/train_phone)
"""

import argparse
import tempfile
from pathlib import Path
from typing import Dict, List

import sentencepiece as spm
import soundfile

from espnet_ofa.data.datadir import read_kaldi_table

PERIODS_MS = range(20, 100, 10)


def frames_needed(labels: List[str]) -> int:
    return len(labels) + sum(a == b for a, b in zip(labels, labels[1:]))


def bpe_units(texts: Dict[str, str], vocab_size: int, workdir: Path) -> Dict[str, List[str]]:
    corpus = workdir / "text.txt"
    corpus.write_text("\n".join(texts.values()) + "\n")
    prefix = workdir / f"bpe{vocab_size}"
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(prefix),
                                   vocab_size=vocab_size, model_type="unigram",
                                   character_coverage=1.0, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=f"{prefix}.model")
    return {u: sp.encode(t, out_type=str) for u, t in texts.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--nbpe", type=int, nargs="+", default=[100, 200, 300])
    args = p.parse_args()
    train = args.data_dir / "train"
    seconds = {u: soundfile.info(path).duration
               for u, path in read_kaldi_table(train / "wav.scp").items()}
    texts = read_kaldi_table(train / "text")
    units = {"char": {u: list(t.replace(" ", "_")) for u, t in texts.items()}}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.nbpe:
            units[f"bpe{n}"] = bpe_units(texts, n, Path(tmp))
    phones = read_kaldi_table(args.data_dir / "train_phone" / "text")
    units["phone"] = {u: t.split() for u, t in phones.items()}
    print(f"{len(texts)} utterances, {sum(seconds.values()) / 3600:.2f} h")
    print("share of utterances CTC cannot emit (%) at each frame period (ms)")
    print(f"{'units':8s} {'per s':>5s}   " + " ".join(f"{p:5d}" for p in PERIODS_MS))
    for name, labels in units.items():
        rate = sum(len(x) for x in labels.values()) / sum(seconds.values())
        shares = [100 * sum(frames_needed(labels[u]) > int(seconds[u] * 1000 / p)
                            for u in labels) / len(labels) for p in PERIODS_MS]
        print(f"{name:8s} {rate:5.1f}   " + " ".join(f"{s:5.1f}" for s in shares))


if __name__ == "__main__":
    main()
