"""Kaldi data directories for the FSDD recipes (stage 1, ``local/data.sh``).

One FSDD copy gives four tasks:

- ``ssl``: single takes (``wav.scp``, ``utt2spk``; ``text`` = the digit word, unused by
  pretraining but handy for probing).
- ``asr``: *connected-digit* utterances, each 2-7 takes of one speaker joined with short
  silences (``text`` = "three one four"). Every take of a split is used exactly once;
  with ``train_single_takes`` the training set also has every train take on its own (a
  model trained only on joined takes never hears an utterance edge inside a digit string).
- ``slu``: single takes as calls to a phone menu; ``text`` = ``<intent> <digit word>``,
  with 10 intents (``INTENTS``: a fixed, synthetic mapping from the spoken digit).
- ``st``: the connected-digit utterances of ``asr`` with ``text`` = a German digit-word
  translation ("drei eins vier") and ``src_text`` = the English transcript. The
  translations are synthetic (word-by-word), said in ``data/README.txt`` and RESULTS.md.

Audio stays at FSDD's 8 kHz here (synthesised utterances are written to
``<data>/local/audio/<split>/``); stage 3 resamples everything to 16 kHz.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from espnet_ofa.data.datadir import (
    atomic_write_text,
    validate_data_dir,
    write_data_dir_tables,
)
from espnet_ofa.espnet_tasks import task_kinds
from espnet_ofa.fileio import PathLike
from espnet_ofa.recipe.fsdd import (
    DIGIT_WORDS,
    FSDD_SAMPLE_RATE,
    Take,
    ensure_fsdd,
    list_takes,
    split_takes,
)

logger = logging.getLogger(__name__)

# SSL pretraining data, or the data of a kind of ESPnet task (espnet_ofa.espnet_tasks).
TASKS = ("ssl",) + task_kinds()

# SLU: a caller answers a phone menu with one digit; the intent is what the digit selects.
INTENTS = ("operator", "billing", "sales", "support", "balance", "payment", "opening_hours",
           "address", "repeat_menu", "cancel")
# ST: synthetic German translations of the digit words.
GERMAN_WORDS = ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht",
                "neun")

SYNTHETIC_NOTE = """\
Data prepared by espnet_ofa.recipe.prepare from the Free Spoken Digit Dataset (FSDD,
Z. Jackson et al., CC BY-SA 4.0). The audio is real speech; some labels are synthetic:
- asr/st: connected-digit utterances are synthesised by joining 2-7 takes of one speaker
  with short silences (not recorded as such).
- st: the German 'translations' are word-by-word digit names (null, eins, ...), a
  synthetic target over real audio, not human translations.
- slu: the 10 intents are a fixed mapping from the spoken digit (a phone menu).
"""


@dataclass(frozen=True)
class Connected:
    """A synthesised connected-digit utterance: several takes of one speaker."""

    utt_id: str
    speaker: str
    takes: Tuple[Take, ...]

    @property
    def digits(self) -> List[int]:
        return [t.digit for t in self.takes]


def plan_connected(
    takes: Sequence[Take], min_digits: int = 2, max_digits: int = 7, seed: int = 0,
    prefix: str = "conn",
) -> List[Connected]:
    """Group the takes of each speaker into utterances of ``min_digits..max_digits`` takes.

    Each take is used exactly once (in a random order); a remainder shorter than
    ``min_digits`` joins the previous utterance (or, for a speaker with fewer than
    ``min_digits`` takes, forms a shorter one). Deterministic for a ``seed``.
    """
    if not 1 <= min_digits <= max_digits:
        raise ValueError(f"need 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}")
    by_spk: Dict[str, List[Take]] = {}
    for t in sorted(takes):
        by_spk.setdefault(t.speaker, []).append(t)
    out: List[Connected] = []
    for spk_no, (spk, pool) in enumerate(sorted(by_spk.items())):
        rng = np.random.default_rng([seed, spk_no])
        order = [pool[i] for i in rng.permutation(len(pool))]
        groups: List[List[Take]] = []
        pos = 0
        while pos < len(order):
            n = int(rng.integers(min_digits, max_digits + 1))
            groups.append(order[pos:pos + n])
            pos += n
        if len(groups) > 1 and len(groups[-1]) < min_digits:
            groups[-2].extend(groups.pop())
        for k, group in enumerate(groups):
            out.append(Connected(f"{spk}_{prefix}{k:04d}", spk, tuple(group)))
    return out


def synthesize(
    utt: Connected, seed: int = 0, sample_rate: int = FSDD_SAMPLE_RATE,
    gap_ms: Tuple[float, float] = (100.0, 300.0), edge_ms: Tuple[float, float] = (50.0, 150.0),
    noise: float = 1e-4,
) -> np.ndarray:
    """Join the takes of ``utt`` with random silences (with faint noise); float32 samples.

    Args:
        gap_ms: range of the silence between two takes; edge_ms: before the first and
            after the last.
        noise: std of the Gaussian noise in the silences (digital zeros are unnatural).
    """
    import soundfile as sf

    rng = np.random.default_rng([seed, *(ord(c) for c in utt.utt_id)])

    def silence(range_ms):
        n = int(rng.uniform(*range_ms) * sample_rate / 1000)
        return (noise * rng.standard_normal(n)).astype(np.float32)

    parts = [silence(edge_ms)]
    for i, take in enumerate(utt.takes):
        wav, rate = sf.read(take.path, dtype="float32", always_2d=False)
        if rate != sample_rate:
            raise ValueError(f"{take.path}: {rate} Hz, expected FSDD's {sample_rate} Hz")
        if wav.ndim != 1:
            wav = wav.mean(axis=1)
        if i:
            parts.append(silence(gap_ms))
        parts.append(wav.astype(np.float32))
    parts.append(silence(edge_ms))
    return np.concatenate(parts)


def _write_wav(path: Path, wav: np.ndarray, rate: int) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(tmp, np.clip(wav, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def _finish(out: Path, tables: Dict[str, Dict[str, str]]) -> None:
    """Write the tables (sorted, atomic) plus utt2spk's inverse spk2utt; validate."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("utt2num_samples", "src_text", "segments"):
        if stale not in tables and (out / stale).exists():
            (out / stale).unlink()
    write_data_dir_tables(out, tables)
    validate_data_dir(out, required=("wav.scp", "text", "utt2spk"))


def single_take_tables(takes: Sequence[Take], task: str) -> Dict[str, Dict[str, str]]:
    """wav.scp/text/utt2spk (+src_text for st) with one utterance per take."""
    text = {}
    for t in takes:
        text[t.utt_id] = (f"{INTENTS[t.digit]} {t.word}" if task == "slu" else
                          GERMAN_WORDS[t.digit] if task == "st" else t.word)
    tables = {
        "wav.scp": {t.utt_id: str(Path(t.path).resolve()) for t in takes},
        "text": text,
        "utt2spk": {t.utt_id: t.speaker for t in takes},
    }
    if task == "st":
        tables["src_text"] = {t.utt_id: t.word for t in takes}
    return tables


def connected_tables(
    utts: Sequence[Connected], audio_dir: Path, task: str, seed: int = 0,
) -> Dict[str, Dict[str, str]]:
    """Synthesise the utterances into ``audio_dir``; wav.scp/text/utt2spk (+src_text for st)."""
    tables: Dict[str, Dict[str, str]] = {"wav.scp": {}, "text": {}, "utt2spk": {}}
    if task == "st":
        tables["src_text"] = {}
    for u in utts:
        path = (audio_dir / f"{u.utt_id}.wav").resolve()
        _write_wav(path, synthesize(u, seed), FSDD_SAMPLE_RATE)
        english = " ".join(DIGIT_WORDS[d] for d in u.digits)
        tables["wav.scp"][u.utt_id] = str(path)
        tables["utt2spk"][u.utt_id] = u.speaker
        if task == "st":
            tables["text"][u.utt_id] = " ".join(GERMAN_WORDS[d] for d in u.digits)
            tables["src_text"][u.utt_id] = english
        else:
            tables["text"][u.utt_id] = english
    return tables


@dataclass
class PrepareConfig:
    """Options of :func:`prepare_fsdd` (the CLI's)."""

    task: str
    fsdd: str
    data_dir: str = "data"
    heldout_speaker: Optional[str] = "theo"
    speakers: Optional[List[str]] = None
    train_takes: Optional[int] = None
    dev_takes: Optional[int] = None
    test_takes: Optional[int] = None
    heldout_takes: Optional[int] = None
    min_digits: int = 2
    max_digits: int = 7
    seed: int = 0
    train_single_takes: bool = False  # asr/st: also each train take alone
    download: bool = True
    url: Optional[str] = None
    splits: Dict[str, int] = field(default_factory=dict)  # filled in: split -> utterances

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")


def prepare_fsdd(config: PrepareConfig) -> Dict[str, int]:
    """Write ``<data_dir>/{train,dev,test,test_<heldout>}`` for ``config.task``.

    Returns ``{split: number of utterances}``. Rerunning rewrites the same content.
    """
    from espnet_ofa.recipe.fsdd import FSDD_URL

    root = Path(config.fsdd)
    if config.download:
        ensure_fsdd(root, config.url or FSDD_URL)
    splits = split_takes(
        list_takes(root), heldout_speaker=config.heldout_speaker or None,
        speakers=config.speakers, train_takes=config.train_takes, dev_takes=config.dev_takes,
        test_takes=config.test_takes, heldout_takes=config.heldout_takes,
    )
    data = Path(config.data_dir)
    counts = {}
    for split_no, (name, takes) in enumerate(splits.items()):
        if config.task in ("ssl", "slu"):
            tables = single_take_tables(takes, config.task)
        else:
            utts = plan_connected(takes, config.min_digits, config.max_digits,
                                  seed=config.seed + 1000 * split_no)
            tables = connected_tables(utts, data / "local" / "audio" / name, config.task,
                                      seed=config.seed)
            if name == "train" and config.train_single_takes:
                for table, mapping in single_take_tables(takes, config.task).items():
                    overlap = set(mapping) & set(tables[table])
                    if overlap:  # cannot happen with FSDD's names; never overwrite silently
                        raise ValueError(f"single-take ids clash with connected ones: "
                                         f"{sorted(overlap)[0]}")
                    tables[table].update(mapping)
        _finish(data / name, tables)
        counts[name] = len(tables["wav.scp"])
        print(f"progress: {data / name}: {counts[name]} utterances", flush=True)
    atomic_write_text(data / "README.txt", SYNTHETIC_NOTE)
    config.splits = counts
    return counts
