"""SLURP as distributed: intents (scenario_action) with their recordings, as Kaldi data dirs.

The layout of the public release (github.com/pswietojanski/slurp plus its audio archives),
read unchanged under ``$SLURP`` (``db.sh``)::

    dataset/slurp/{train,devel,test}.jsonl     one JSON object per line (a text prompt)
    dataset/slurp/train_synthetic.jsonl        optional: prompts read by TTS voices
    dataset/slurp/metadata.json                optional: speaker ("usrid") per recording
    audio/slurp_real/*.flac                    headset and far-field recordings
    audio/slurp_synth/*.flac                   the synthetic recordings

Each JSON object has ``slurp_id``, ``sentence``, ``intent`` (``<scenario>_<action>``),
``scenario``, ``action``, ``entities`` and ``recordings`` (a list of ``{"file": ...}``).
Every recording becomes one utterance: headset (``*-headset.flac``) and far-field ones both
go to training, as ESPnet's SLURP recipe does. ``text`` is ``<intent> <sentence>``: the SLU
model predicts the intent as its first token and the words after it, and intent accuracy
is scored on the first token.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence

from espnet_ofa.data.datadir import write_data_dir_tables
from espnet_ofa.fileio import PathLike

logger = logging.getLogger(__name__)


# Data-dir name -> (jsonl file, audio folder); train_synthetic is used only when present.
SPLITS: Dict[str, tuple] = {
    "train": ("train.jsonl", "slurp_real"),
    "train_synthetic": ("train_synthetic.jsonl", "slurp_synth"),
    "devel": ("devel.jsonl", "slurp_real"),
    "test": ("test.jsonl", "slurp_real"),
}
RECORDING_KINDS = ("all", "headset", "farfield")
_SAFE_ID = re.compile(r"[^A-Za-z0-9_-]+")


class SLURPError(ValueError):
    """SLURP is missing or malformed; the message names the file (and line) and the fix."""


@dataclass(frozen=True, order=True)
class Utterance:
    utt_id: str
    speaker: str
    path: Path
    intent: str
    sentence: str

    @property
    def text(self) -> str:
        return f"{self.intent} {self.sentence}"


def _is_headset(file_name: str) -> bool:
    return Path(file_name).stem.endswith("-headset")


def _iter_jsonl(path: Path) -> Iterator[tuple]:
    """``(lineno, object)`` for every non-blank line; errors name the file and line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise SLURPError(f"{path}:{lineno}: not UTF-8 ({err}); the file is damaged: "
                                 "download SLURP's dataset/ again") from err
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise SLURPError(f"{path}:{lineno}: not a JSON object ({err.msg}); the file is "
                                 "damaged: download SLURP's dataset/ again") from err
            if not isinstance(obj, dict):
                raise SLURPError(f"{path}:{lineno}: expected a JSON object, got "
                                 f"{type(obj).__name__}")
            yield lineno, obj


def load_speakers(root: PathLike) -> Dict[str, str]:
    """Recording file name -> speaker id from ``dataset/slurp/metadata.json`` ({} if absent)."""
    meta = Path(root) / "dataset" / "slurp" / "metadata.json"
    if not meta.is_file():
        return {}
    try:
        records = json.loads(meta.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SLURPError(f"{meta}: unreadable ({err}); download SLURP's dataset/ again") from err
    speakers = {}
    for record in records.values() if isinstance(records, dict) else ():
        for name, rec in (record.get("recordings") or {}).items():
            if isinstance(rec, dict) and rec.get("usrid"):
                speakers[name] = str(rec["usrid"])
    return speakers


def list_split(root: PathLike, split: str, recordings: str = "all",
               speakers: Optional[Mapping[str, str]] = None) -> List[Utterance]:
    """Utterances of one split (``train``, ``train_synthetic``, ``devel``, ``test``)."""
    if split not in SPLITS:
        raise SLURPError(f"unknown SLURP split {split!r}; choose from {', '.join(SPLITS)}")
    if recordings not in RECORDING_KINDS:
        raise SLURPError(f"recordings must be one of {RECORDING_KINDS}, got {recordings!r}")
    root = Path(root)
    jsonl_name, audio_folder = SPLITS[split]
    jsonl = root / "dataset" / "slurp" / jsonl_name
    audio_dir = root / "audio" / audio_folder
    if not jsonl.is_file():
        raise SLURPError(f"{jsonl} not found: set SLURP (db.sh) to the folder of the SLURP "
                         "release (holding dataset/slurp/ and audio/)")
    speakers = speakers or {}
    utts: List[Utterance] = []
    for lineno, obj in _iter_jsonl(jsonl):
        where = f"{jsonl}:{lineno}"
        for key in ("slurp_id", "sentence", "intent"):
            if key not in obj:
                raise SLURPError(f"{where}: no '{key}' field; not a SLURP record")
        intent = str(obj["intent"]).strip()
        if not intent or any(c.isspace() for c in intent):
            raise SLURPError(f"{where}: intent {obj['intent']!r} must be one token "
                             "(<scenario>_<action>)")
        sentence = " ".join(str(obj["sentence"]).split())
        recs = obj.get("recordings")
        if not isinstance(recs, list) or not recs:
            raise SLURPError(f"{where}: slurp_id {obj['slurp_id']} has no recordings; SLURP "
                             "records list their audio files under 'recordings'")
        for rec in recs:
            name = rec.get("file") if isinstance(rec, dict) else None
            if not name:
                raise SLURPError(f"{where}: a recording without a 'file' name")
            if recordings == "headset" and not _is_headset(name):
                continue
            if recordings == "farfield" and _is_headset(name):
                continue
            path = audio_dir / name
            if not path.is_file():
                raise SLURPError(f"{where}: audio {path} is missing; download SLURP's audio "
                                 f"archives into {root / 'audio'}")
            stem = _SAFE_ID.sub("_", Path(name).stem)
            speaker = _SAFE_ID.sub("_", speakers.get(name, "")) or stem
            # Kaldi wants utterance ids to start with the speaker id.
            utt_id = stem if speaker == stem else f"{speaker}-{stem}"
            utts.append(Utterance(utt_id, speaker, path.resolve(), intent, sentence))
    if not utts:
        raise SLURPError(f"{jsonl}: no utterances with {recordings} recordings")
    return sorted(utts)


def write_data_dir(utts: Sequence[Utterance], out_dir: PathLike) -> Path:
    """Kaldi data dir: wav.scp, text (``<intent> <sentence>``), utt2spk, spk2utt."""
    out = Path(out_dir)
    seen: Dict[str, Path] = {}
    for u in utts:
        if u.utt_id in seen and seen[u.utt_id] != u.path:
            raise SLURPError(f"two recordings map to utterance id {u.utt_id}: {seen[u.utt_id]} "
                             f"and {u.path}")
        seen[u.utt_id] = u.path
    unique = {u.utt_id: u for u in utts}
    return write_data_dir_tables(out, {
        "wav.scp": {k: str(u.path) for k, u in unique.items()},
        "text": {k: u.text for k, u in unique.items()},
        "utt2spk": {k: u.speaker for k, u in unique.items()},
    })


def prepare(root: PathLike, data_dir: PathLike, use_synthetic: bool = True,
            train_recordings: str = "all", eval_recordings: str = "all",
            max_utts: Optional[int] = None) -> Dict[str, int]:
    """Write ``data_dir/{train,devel,test}``; synthetic prompts join train when present.

    Returns:
        ``{name: number of utterances}``.
    """
    root = Path(root)
    speakers = load_speakers(root)
    sets = {
        "train": [("train", train_recordings)],
        "devel": [("devel", eval_recordings)],
        "test": [("test", eval_recordings)],
    }
    synth = root / "dataset" / "slurp" / SPLITS["train_synthetic"][0]
    if use_synthetic and synth.is_file():
        sets["train"].append(("train_synthetic", "all"))
    counts = {}
    for name, sources in sets.items():
        utts = [u for split, kind in sources for u in list_split(root, split, kind, speakers)]
        if max_utts is not None:
            utts = sorted(utts)[:max_utts]
        write_data_dir(utts, Path(data_dir) / name)
        counts[name] = len(utts)
        print(f"progress: data/{name}: {len(utts)} utterances", flush=True)
    return counts
