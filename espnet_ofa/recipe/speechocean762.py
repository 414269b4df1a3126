"""speechocean762 as released: read it, check it, download it, write ESPnet data dirs.

speechocean762 (OpenSLR resource 101; Zhang et al., Interspeech 2021) is read English by
250 speakers with a Mandarin L1 (children and adults), 16 kHz mono WAV. The release, read
unchanged under ``$SPEECHOCEAN762`` (``db.sh``)::

    WAVE/SPEAKER<spk>/<utt>.WAV        every recording (also 245 that no wav.scp lists)
    train/ test/                       Kaldi dirs, 125 speakers each, speaker-disjoint:
        wav.scp                        "<utt>\\tWAVE/SPEAKER<spk>/<utt>.WAV" (relative paths)
        text utt2spk spk2utt spk2age spk2gender
    resource/lexicon.txt               CMU-style pronunciations
    resource/text-phone                "<utt>.<word index>\\t<phones>", one line per word,
                                       phones with stress digits and position tags (AO0_I)

Data dirs written by :func:`prepare` (``wav.scp`` with absolute paths, ``utt2spk``,
``spk2utt``):

- ``train``, ``dev``, ``test``: ``text`` = the words. ``dev`` is a speaker-disjoint part of
  the official train set (``dev_speakers`` voices spread over the ages), ``train`` the rest.
- ``train_phone``, ``dev_phone``, ``test_phone``: the same utterances, ``text`` = the
  phones of ``resource/text-phone`` without stress digits and position tags (39 ARPAbet
  phones; phone recognition as SUPERB's PR task, scored as PER).
- ``pretrain``: audio for SSL pretraining: ``train`` plus the recordings that no wav.scp
  lists, except those of test and dev speakers (no pretrained model hears a test voice,
  and the dev loss is measured on unheard voices).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from espnet_ofa.data.datadir import atomic_write_text, read_kaldi_table, write_data_dir_tables
from espnet_ofa.recipe.download import DownloadError, fetch
from espnet_ofa.fileio import PathLike

logger = logging.getLogger(__name__)


URL = "https://www.openslr.org/resources/101/speechocean762.tar.gz"
LABELLED_SPLITS = ("train", "test")
SPLIT_TABLES = ("wav.scp", "text", "utt2spk", "spk2age", "spk2gender")
# The characters of the release's transcripts: upper-case words, apostrophes, spaces.
TEXT_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ")
# The 39 ARPAbet phones of the CMU dictionary (stress removed), the phone recogniser's units.
PHONES = frozenset(
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH "
    "UH UW V W Y Z ZH".split())
DEFAULT_DEV_SPEAKERS = 12

_POSITION_TAG = re.compile(r"_[BIES]$")
_STRESS = re.compile(r"[0-2]$")
_SPEAKER_FOLDER = re.compile(r"^SPEAKER(\d+)$")


class SpeechOcean762Error(ValueError):
    """speechocean762 is missing or malformed; the message names the file (and line) and
    the fix."""


@dataclass(frozen=True, order=True)
class Utterance:
    utt_id: str
    speaker: str
    path: Path
    words: str = ""   # empty for the unlabelled recordings
    phones: str = ""


@dataclass
class Corpus:
    """The release: labelled utterances per split, speakers' ages, unlabelled recordings."""

    splits: Dict[str, List[Utterance]]
    ages: Dict[str, int]
    unlabelled: List[Utterance]


def has_corpus(root: PathLike) -> bool:
    root = Path(root)
    return (root / "WAVE").is_dir() and all((root / s / "wav.scp").is_file()
                                            for s in LABELLED_SPLITS)


def _missing_corpus(root: Path) -> SpeechOcean762Error:
    return SpeechOcean762Error(
        f"no speechocean762 in {root} (expected WAVE/, train/wav.scp, test/wav.scp, "
        "resource/text-phone). Set SPEECHOCEAN762 (db.sh) to the folder of the release, or "
        f"let local/data.sh download it ({URL})")


def phones_of(tagged: str) -> List[str]:
    """``"K_B AO0_I L_E"`` -> ``["K", "AO", "L"]`` (position tags, then stress, removed)."""
    return [_STRESS.sub("", _POSITION_TAG.sub("", p)) for p in tagged.split()]


def read_phone_transcripts(path: PathLike) -> Dict[str, List[List[str]]]:
    """``resource/text-phone`` as ``{utt: [phones of word 0, phones of word 1, ...]}``."""
    path = Path(path)
    if not path.is_file():
        raise SpeechOcean762Error(f"{path} not found: the release is incomplete (resource/ "
                                  "holds the phone transcripts); download it again")
    words: Dict[str, Dict[int, List[str]]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        key, _, tagged = line.partition("\t")
        utt, dot, index = key.partition(".")
        if not dot or not index.isdigit() or not tagged.strip():
            raise SpeechOcean762Error(
                f"{path}:{lineno}: malformed line {line[:80]!r}: expected "
                "'<utt>.<word index>\\t<phones>'")
        phones = phones_of(tagged)
        unknown = sorted(set(phones) - PHONES)
        if unknown:
            raise SpeechOcean762Error(
                f"{path}:{lineno}: unknown phone {unknown[0]!r} in {tagged!r}; phones are the "
                "39 ARPAbet phones with a stress digit and a position tag (_B _I _E _S)")
        if int(index) in words.setdefault(utt, {}):
            raise SpeechOcean762Error(f"{path}:{lineno}: word {key} is listed twice")
        words[utt][int(index)] = phones
    out = {}
    for utt, by_index in words.items():
        if sorted(by_index) != list(range(len(by_index))):
            raise SpeechOcean762Error(f"{path}: the words of {utt} are numbered "
                                      f"{sorted(by_index)}, not 0..{len(by_index) - 1}")
        out[utt] = [by_index[i] for i in range(len(by_index))]
    return out


def _check_text(path: Path, texts: Mapping[str, str]) -> None:
    for lineno, (utt, text) in enumerate(texts.items(), start=1):
        bad = sorted(set(text) - TEXT_CHARACTERS)
        if bad:
            raise SpeechOcean762Error(
                f"{path}:{lineno}: utterance {utt} has the character {bad[0]!r} "
                f"(U+{ord(bad[0]):04X}) in {text!r}; speechocean762 transcripts are upper-case "
                "A-Z, apostrophes and spaces: correct the line or restore the released file")


def _absolute(path: Path) -> Path:
    """Absolute, ``..`` removed, symbolic links kept (a WAVE/ linked elsewhere is fine)."""
    return Path(os.path.abspath(path))


def _audio_path(root: Path, scp: Path, utt: str, value: str) -> Path:
    path = _absolute(root / value)
    if not path.is_relative_to(_absolute(root)):
        raise SpeechOcean762Error(
            f"{scp}: utterance {utt} points to {value!r}, outside the corpus {root}; wav.scp "
            "paths are relative to the corpus root (WAVE/SPEAKER<spk>/<utt>.WAV): restore the "
            "released wav.scp")
    if not path.is_file():
        raise SpeechOcean762Error(
            f"{scp}: the audio of utterance {utt} ({path}) is missing; the copy of the corpus "
            "is incomplete: download it again (or remove SPEECHOCEAN762's folder and let "
            "local/data.sh download it)")
    return path


def _read_split(root: Path, split: str,
                phones: Mapping[str, List[List[str]]]) -> Tuple[List[Utterance], Dict[str, int]]:
    base = root / split
    for name in SPLIT_TABLES:
        if not (base / name).is_file():
            raise SpeechOcean762Error(f"{base / name} not found: the release is incomplete; "
                                      "download it again")
    wavs = read_kaldi_table(base / "wav.scp")
    texts = read_kaldi_table(base / "text")
    utt2spk = read_kaldi_table(base / "utt2spk")
    ages = read_kaldi_table(base / "spk2age")
    for name, table in (("text", texts), ("utt2spk", utt2spk)):
        missing = sorted(set(wavs) - set(table))
        extra = sorted(set(table) - set(wavs))
        if missing or extra:
            what = (f"has no line for {missing[0]} (in wav.scp)" if missing
                    else f"lists {extra[0]}, which wav.scp does not")
            raise SpeechOcean762Error(f"{base / name} {what}; restore the released file")
    _check_text(base / "text", texts)
    speakers = set(utt2spk.values())
    no_age = sorted(speakers - set(ages))
    if no_age:
        raise SpeechOcean762Error(f"{base / 'spk2age'} has no line for speaker {no_age[0]} "
                                  "(in utt2spk); restore the released file")
    utts = []
    for utt, value in wavs.items():
        words = texts[utt].split()
        if utt not in phones:
            raise SpeechOcean762Error(f"{root / 'resource' / 'text-phone'} has no phones for "
                                      f"{utt} ({split}/text: {texts[utt]!r}); restore it")
        if len(phones[utt]) != len(words):
            raise SpeechOcean762Error(
                f"{root / 'resource' / 'text-phone'}: {utt} has {len(phones[utt])} words of "
                f"phones but {split}/text has {len(words)} words ({texts[utt]!r})")
        utts.append(Utterance(utt, utt2spk[utt], _audio_path(root, base / "wav.scp", utt, value),
                              " ".join(words), " ".join(p for w in phones[utt] for p in w)))
    try:
        age_of = {s: int(a) for s, a in ages.items() if s in speakers}
    except ValueError as err:
        raise SpeechOcean762Error(f"{base / 'spk2age'}: an age is not a number ({err})") from err
    return sorted(utts), age_of


def read_corpus(root: PathLike) -> Corpus:
    """Every utterance of the release, checked (see the module doc for the layout)."""
    root = Path(root)
    if not has_corpus(root):
        raise _missing_corpus(root)
    phones = read_phone_transcripts(root / "resource" / "text-phone")
    splits, ages = {}, {}
    for split in LABELLED_SPLITS:
        splits[split], split_ages = _read_split(root, split, phones)
        ages.update(split_ages)
    ids = {s: {u.utt_id for u in utts} for s, utts in splits.items()}
    both = sorted(ids["train"] & ids["test"])
    if both:
        raise SpeechOcean762Error(
            f"utterance {both[0]} is in both {root / 'train'} and {root / 'test'} "
            f"({len(both)} shared utterances); the release's train and test sets are disjoint: "
            "restore their wav.scp files")
    speakers = {s: {u.speaker for u in utts} for s, utts in splits.items()}
    shared = sorted(speakers["train"] & speakers["test"])
    if shared:
        raise SpeechOcean762Error(
            f"speaker {shared[0]} is in both {root / 'train'} and {root / 'test'} "
            f"({len(shared)} shared speakers); the release's split is speaker-disjoint: restore "
            "its utt2spk files")
    listed = {u.path for utts in splits.values() for u in utts}
    unlabelled = []
    for wav in sorted((root / "WAVE").glob("*/*.WAV")):
        m = _SPEAKER_FOLDER.match(wav.parent.name)
        if m is None or _absolute(wav) in listed:
            continue
        unlabelled.append(Utterance(wav.stem, m.group(1), _absolute(wav)))
    return Corpus(splits=splits, ages=ages, unlabelled=unlabelled)


def dev_speakers(train: Sequence[Utterance], ages: Mapping[str, int], n: int) -> List[str]:
    """``n`` train speakers spread evenly over the ages (children and adults alike)."""
    speakers = sorted({u.speaker for u in train}, key=lambda s: (ages[s], s))
    if not 1 <= n < len(speakers):
        raise SpeechOcean762Error(f"dev_speakers must be between 1 and {len(speakers) - 1} "
                                  f"(the train set has {len(speakers)} speakers), got {n}")
    return sorted(speakers[int((i + 0.5) * len(speakers) / n)] for i in range(n))


def _write(utts: Sequence[Utterance], out_dir: Path, text: Optional[str]) -> None:
    tables = {"wav.scp": {u.utt_id: str(u.path) for u in utts},
              "utt2spk": {u.utt_id: u.speaker for u in utts}}
    if text is not None:
        tables["text"] = {u.utt_id: getattr(u, text) for u in utts}
    elif (out_dir / "text").exists():
        (out_dir / "text").unlink()
    write_data_dir_tables(out_dir, tables)


def split_corpus(corpus: Corpus, n_dev_speakers: int = DEFAULT_DEV_SPEAKERS,
                 max_utts: Optional[int] = None) -> Dict[str, List[Utterance]]:
    """``{train, dev, test, pretrain}`` utterances (see the module doc)."""
    dev = set(dev_speakers(corpus.splits["train"], corpus.ages, n_dev_speakers))
    test = {u.speaker for u in corpus.splits["test"]}
    sets = {
        "train": [u for u in corpus.splits["train"] if u.speaker not in dev],
        "dev": [u for u in corpus.splits["train"] if u.speaker in dev],
        "test": list(corpus.splits["test"]),
    }
    sets["unlabelled"] = [u for u in corpus.unlabelled if u.speaker not in dev | test]
    if max_utts is not None:
        sets = {name: utts[:max_utts] for name, utts in sets.items()}
    sets["pretrain"] = sorted(sets["train"] + sets.pop("unlabelled"))
    return sets


def prepare(root: PathLike, data_dir: PathLike, n_dev_speakers: int = DEFAULT_DEV_SPEAKERS,
            max_utts: Optional[int] = None, download: bool = True,
            url: str = URL) -> Dict[str, int]:
    """Write the data dirs of the module doc under ``data_dir``; download the corpus first
    when ``root`` holds none (unless ``download=False``).

    Args:
        max_utts: keep the first N utterances of train, dev, test and of the unlabelled
            recordings (sorted by id), for quick runs; None = all.

    Returns:
        ``{data dir name: number of utterances}``.
    """
    root, data_dir = Path(root), Path(data_dir)
    if not has_corpus(root):
        if not download:
            raise _missing_corpus(root)
        download_corpus(root, url)
    sets = split_corpus(read_corpus(root), n_dev_speakers, max_utts)
    counts = {}
    for name, utts in sets.items():
        if name == "pretrain":
            _write(utts, data_dir / name, None)
            counts[name] = len(utts)
            continue
        _write(utts, data_dir / name, "words")
        _write(utts, data_dir / f"{name}_phone", "phones")
        counts[name] = counts[f"{name}_phone"] = len(utts)
    n_unlabelled = counts["pretrain"] - counts["train"]
    lines = [f"speechocean762 ({root.resolve()}), speaker-disjoint sets:"]
    for name in ("train", "dev", "test"):
        n_spk = len({u.speaker for u in sets[name]})
        lines.append(f"- {name}: {counts[name]} utterances, {n_spk} speakers")
    lines.append(f"- pretrain (SSL): train + {n_unlabelled} unlabelled recordings of train "
                 "speakers (none of test or dev speakers)")
    notes = "\n".join(lines)
    atomic_write_text(data_dir / "README.txt", notes + "\n")
    print("progress: " + notes.replace("\n", "\nprogress: "), flush=True)
    return counts


# --------------------------------------------------------------------------- download


def _corpus_folder(staging: Path) -> Path:
    """The unpacked folder that holds train/wav.scp (the archive's top folder or itself)."""
    for candidate in (staging, *sorted(p for p in staging.iterdir() if p.is_dir())):
        if has_corpus(candidate):
            return candidate
    raise DownloadError("the archive holds no speechocean762 release (WAVE/, train/wav.scp, "
                        "test/wav.scp); is the URL right?")


def download_corpus(root: PathLike, url: str = URL, progress: bool = True) -> Path:
    """Download the release archive and unpack it as ``root``.

    Atomic and resumable: the archive is fetched to ``<root>.tar.gz.part`` and renamed
    ``<root>.tar.gz`` when complete (a rerun after a kill during unpacking does not download
    it again); it is unpacked and checked (:func:`read_corpus`: every listed WAV present)
    in a temporary folder beside ``root``, which becomes ``root`` only then; the archive is
    removed last. ``url`` may be ``file://``.
    """
    root = Path(root)
    if has_corpus(root):
        return root
    if root.exists() and any(root.iterdir()):
        raise SpeechOcean762Error(
            f"{root} is not empty but holds no speechocean762 release (WAVE/, train/wav.scp, "
            "test/wav.scp): remove it or set SPEECHOCEAN762 (db.sh) to the release")
    root.parent.mkdir(parents=True, exist_ok=True)
    archive = root.parent / f"{root.name}.tar.gz"
    partial = root.parent / f"{root.name}.tar.gz.part"
    try:
        if not archive.is_file():
            print(f"progress: downloading speechocean762 from {url}", flush=True)
            fetch(url, partial, "speechocean762", progress=progress)
            os.replace(partial, archive)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
        try:
            try:
                with tarfile.open(archive) as tar:
                    tar.extractall(staging, filter="data")
            except (tarfile.TarError, OSError, EOFError) as err:
                archive.unlink()
                reason = " ".join(str(err).split())
                raise DownloadError(f"the archive from {url} is unreadable ({reason}); it was "
                                    "removed: run again to download it again") from err
            unpacked = _corpus_folder(staging)
            read_corpus(unpacked)
            if root.exists():
                root.rmdir()  # empty (checked above)
            os.replace(unpacked, root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except DownloadError as err:
        raise SpeechOcean762Error(
            f"{err}. Without internet, copy the release (OpenSLR resource 101) to {root} or set "
            "SPEECHOCEAN762 (db.sh) to a local copy") from err
    archive.unlink()
    print(f"progress: speechocean762 in {root}", flush=True)
    return root
