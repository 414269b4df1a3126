"""Token lists (stage 5) in ESPnet's format, without importing ESPnet.

A token list has one token per line; the line number is the token's id:
``<blank>`` (0, for CTC), ``<unk>`` (1), the tokens of the training text by decreasing
count (ties in code-point order), ``<sos/eos>`` (last). Token types as ESPnet's
tokenizers split text:

- ``word``: whitespace-separated words;
- ``char``: characters, a space written ``<space>`` (ESPnet's CharTokenizer);
- ``bpe``: sentencepiece pieces of a model trained here (``bpe.model`` beside the list).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

from espnet_ofa.data.datadir import atomic_write_text, read_kaldi_table
from espnet_ofa.fileio import PathLike

logger = logging.getLogger(__name__)

TOKEN_TYPES = ("word", "char", "bpe")
BLANK, UNK, SOS_EOS, SPACE = "<blank>", "<unk>", "<sos/eos>", "<space>"


def read_texts(files: Sequence[PathLike]) -> List[str]:
    """Transcripts (the value after the id) of Kaldi ``text`` files; checks each file."""
    out: List[str] = []
    for f in files:
        out.extend(read_kaldi_table(f).values())
    return out


# sentencepiece's refusal of a vocabulary smaller than the text's characters plus its
# special pieces: "... smaller than required_chars. 30 vs 35 ...". It alone knows the count
# (after its own normalisation), so the number is taken from its message.
_TOO_SMALL = re.compile(r"smaller than required_chars\.\s*(\d+)\s*vs\s*(\d+)")


def train_bpe(texts: Iterable[str], model_prefix: PathLike, vocab_size: int,
              model_type: str = "unigram", fit_data: bool = False,
              option: str = "--nbpe") -> Path:
    """Train a sentencepiece model on ``texts``; returns ``<model_prefix>.model``.

    ``vocab_size`` is a soft limit above (small data gives fewer pieces), but it must hold
    every character of the text plus sentencepiece's special pieces. When it does not,
    ``fit_data`` (smoke runs on tiny data) raises it to that minimum with a warning;
    otherwise a ValueError names ``option``, the recipe option to raise.
    """
    import sentencepiece as spm

    prefix = Path(model_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    corpus = prefix.with_name(prefix.name + ".train.txt")
    atomic_write_text(corpus, "".join(t + "\n" for t in texts))

    def train(size: int) -> None:
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(prefix), vocab_size=int(size),
            model_type=model_type, character_coverage=1.0, input_sentence_size=100000000,
            hard_vocab_limit=False, minloglevel=2,
        )

    try:
        train(vocab_size)
    except RuntimeError as err:
        found = _TOO_SMALL.search(str(err))
        if found is None:
            raise
        needed = int(found.group(2))
        if not fit_data:
            raise ValueError(
                f"{option} {vocab_size} is too small for this text: sentencepiece needs a "
                f"vocabulary of at least {needed} (every character of the training text plus "
                f"its special pieces); run with {option} {needed} or more"
            ) from None
        logger.warning("%s %d is below the %d pieces the text's characters need; training "
                       "a vocabulary of %d", option, vocab_size, needed, needed)
        train(needed)
    finally:
        corpus.unlink(missing_ok=True)
    return prefix.with_name(prefix.name + ".model")


def tokenize(text: str, token_type: str, bpe_model: Optional[PathLike] = None) -> List[str]:
    if token_type == "word":
        return text.split()
    if token_type == "char":
        return [SPACE if c == " " else c for c in " ".join(text.split())]
    if token_type == "bpe":
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(bpe_model))
        return sp.encode(text, out_type=str)
    raise ValueError(f"token_type must be one of {TOKEN_TYPES}, got {token_type!r}")


def build_token_list(texts: Iterable[str], token_type: str, bpe_model: Optional[PathLike] = None,
                     add_blank: bool = True) -> List[str]:
    """ESPnet token list of ``texts`` (see the module doc)."""
    counts: Counter = Counter()
    sp = None
    if token_type == "bpe":
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(bpe_model))
    for text in texts:
        counts.update(sp.encode(text, out_type=str) if sp is not None else tokenize(text, token_type))
    special = {BLANK, UNK, SOS_EOS}
    body = [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if t not in special]
    return ([BLANK] if add_blank else []) + [UNK] + body + [SOS_EOS]


def make_token_list(
    text_files: Sequence[PathLike], out: PathLike, token_type: str = "word", nbpe: int = 30,
    bpe_mode: str = "unigram", add_blank: bool = True, nbpe_fit_data: bool = False,
    nbpe_option: str = "--nbpe",
) -> Path:
    """Write ``out`` (tokens.txt) from Kaldi text files; for bpe also ``bpe.model`` beside it.

    ``nbpe_fit_data`` and ``nbpe_option``: see `train_bpe` (``fit_data``, ``option``).
    """
    if token_type not in TOKEN_TYPES:
        raise ValueError(f"token_type must be one of {TOKEN_TYPES}, got {token_type!r}")
    out = Path(out)
    texts = read_texts(text_files)
    bpe_model = None
    if token_type == "bpe":
        bpe_model = train_bpe(texts, out.parent / "bpe", nbpe, bpe_mode, fit_data=nbpe_fit_data,
                              option=nbpe_option)
    tokens = build_token_list(texts, token_type, bpe_model, add_blank=add_blank)
    atomic_write_text(out, "".join(t + "\n" for t in tokens))
    return out


def unit_token_list(n_units: int) -> List[str]:
    """Token list of k-means units for hubert_train: ``0 .. n-1`` (id = unit), then
    ``<unk>`` and ``<sos/eos>`` (the task requires both; no unit maps to them)."""
    return [str(i) for i in range(n_units)] + [UNK, SOS_EOS]
