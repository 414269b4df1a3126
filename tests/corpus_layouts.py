"""Small corpora in the exact layouts of LibriSpeech, SLURP and CoVoST 2 / Common Voice,
built from the real speech in ``../shared/data`` (AN4 commands and FSDD digits).

The recipes read these corpora as they are distributed; the tests (and anyone who wants to
try a scale recipe's ``--smoke true`` path offline) build look-alikes here::

    python tests/corpus_layouts.py librispeech /tmp/librispeech   # then LIBRISPEECH=/tmp/librispeech
    python tests/corpus_layouts.py slurp /tmp/slurp               # SLURP=/tmp/slurp
    python tests/corpus_layouts.py covost2 /tmp/cv /tmp/covost    # COMMONVOICE=/tmp/cv COVOST2=/tmp/covost

Only the layout and the file formats are real (FLAC, MP3 at 48 kHz, upper-case LibriSpeech
transcripts, tab-separated Common Voice / CoVoST tables); the labels are made up.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import soundfile
import torch
import torchaudio

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
AN4 = SHARED_DATA / "an4_small"
FSDD = SHARED_DATA / "fsdd" / "recordings"
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
GERMAN = ("Null", "Eins", "Zwei", "Drei", "Vier", "Fünf", "Sechs", "Sieben", "Acht", "Neun")


def available() -> bool:
    return (AN4 / "train.jsonl").is_file() and FSDD.is_dir()


def an4_utterances() -> List[Tuple[np.ndarray, str]]:
    """The 40 AN4 utterances (16 kHz float32, lower-case text), train first."""
    out = []
    for name in ("train.jsonl", "test.jsonl"):
        for line in (AN4 / name).read_text().splitlines():
            item = json.loads(line)
            audio, rate = soundfile.read(AN4 / item["audio"], dtype="float32")
            assert rate == 16000
            out.append((audio, item["text"]))
    return out


def fsdd_take(digit: int, speaker: str, index: int, rate: int = 16000) -> np.ndarray:
    audio, sr = soundfile.read(FSDD / f"{digit}_{speaker}_{index}.wav", dtype="float32")
    return resample(audio, sr, rate)


def resample(audio: np.ndarray, src: int, dst: int) -> np.ndarray:
    if src == dst:
        return audio
    return torchaudio.functional.resample(torch.from_numpy(audio), src, dst).numpy()


def build_librispeech(root: Path, parts: Dict[str, int] = None) -> Path:
    """``root/LibriSpeech/<part>/<spk>/<chapter>/`` with FLAC and upper-case ``.trans.txt``.

    ``parts`` maps a part name to its number of utterances, taken in turn from AN4's 40.
    """
    parts = parts or {"train-clean-100": 24, "dev-clean": 8, "test-clean": 8}
    utts = an4_utterances()
    pos = 0
    for p_index, (part, count) in enumerate(parts.items()):
        chosen = [utts[(pos + i) % len(utts)] for i in range(count)]
        pos += count
        # Two speakers with two chapters each per part, as LibriSpeech groups them.
        for i, (audio, text) in enumerate(chosen):
            speaker = str(100 + 10 * p_index + i % 2)
            chapter = str(2000 + 10 * p_index + (i // 2) % 2)
            folder = root / "LibriSpeech" / part / speaker / chapter
            folder.mkdir(parents=True, exist_ok=True)
            utt = f"{speaker}-{chapter}-{i:04d}"
            soundfile.write(folder / f"{utt}.flac", audio, 16000, format="FLAC")
            with open(folder / f"{speaker}-{chapter}.trans.txt", "a", encoding="utf-8") as f:
                f.write(f"{utt} {text.upper()}\n")
    (root / "LibriSpeech" / "README.TXT").write_text("LibriSpeech look-alike built for tests\n")
    return root


SLURP_INTENTS = ("alarm_set", "weather_query", "play_music", "calendar_query", "iot_hue_lightoff",
                 "general_quirky", "news_query", "datetime_query", "email_sendemail", "qa_factoid")


def build_slurp(root: Path, per_split: Dict[str, int] = None) -> Path:
    """``root/dataset/slurp/*.jsonl`` + ``root/audio/slurp_real/*.flac`` (headset + far-field)."""
    per_split = per_split or {"train": 30, "devel": 10, "test": 10}
    speakers = ("jackson", "nicolas", "george", "yweweler")
    text_dir = root / "dataset" / "slurp"
    audio_dir = root / "audio" / "slurp_real"
    text_dir.mkdir(parents=True, exist_ok=True)
    audio_dir.mkdir(parents=True, exist_ok=True)
    metadata = {}
    slurp_id = 1000
    take = {"train": 10, "devel": 5, "test": 0}
    for split, count in per_split.items():
        lines = []
        for i in range(count):
            digit = i % 10
            speaker = speakers[(i // 10) % len(speakers)]
            index = take[split] + i // 10
            audio = fsdd_take(digit, speaker, index)
            stamp = 1434500000 + slurp_id
            headset, farfield = f"audio-{stamp}-headset.flac", f"audio-{stamp}.flac"
            soundfile.write(audio_dir / headset, audio, 16000, format="FLAC")
            # The far-field copy: quieter, with a little room noise.
            rng = np.random.default_rng(slurp_id)
            far = 0.5 * audio + 0.003 * rng.standard_normal(audio.shape).astype(np.float32)
            soundfile.write(audio_dir / farfield, far, 16000, format="FLAC")
            intent = SLURP_INTENTS[digit]
            scenario, action = intent.split("_", 1)
            lines.append(json.dumps({
                "slurp_id": slurp_id, "sentence": f"option {DIGITS[digit]} please",
                "sentence_annotation": f"option [number : {DIGITS[digit]}] please",
                "intent": intent, "action": action, "scenario": scenario,
                "tokens": [{"surface": w, "id": k} for k, w in
                           enumerate(["option", DIGITS[digit], "please"])],
                "entities": [{"span": [1], "type": "number"}],
                "recordings": [{"file": headset, "wer": 0.0, "ent_wer": 0.0, "status": "correct"},
                               {"file": farfield, "wer": 0.0, "ent_wer": 0.0, "status": "correct"}],
            }))
            user = hashlib.md5(speaker.encode()).hexdigest()[:8].upper()
            metadata[str(slurp_id)] = {"recordings": {headset: {"usrid": user},
                                                      farfield: {"usrid": user}}}
            slurp_id += 1
        (text_dir / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (text_dir / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    return root


def build_covost2(cv_root: Path, covost_root: Path, per_split: Dict[str, int] = None) -> None:
    """``cv_root/en/{clips/*.mp3,validated.tsv}`` (48 kHz MP3) and
    ``covost_root/covost_v2.en_de.tsv`` over connected FSDD digits."""
    per_split = per_split or {"train": 30, "dev": 8, "test": 8}
    clips = cv_root / "en" / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    covost_root.mkdir(parents=True, exist_ok=True)
    cv_header = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender",
                 "accents", "locale", "segment"]
    cv_rows = ["\t".join(cv_header)]
    covost_rows = ["path\ttranslation\tsplit\tclient_id"]
    speakers = ("jackson", "nicolas", "george", "yweweler")
    rng = np.random.default_rng(0)
    n = 0
    for split, count in per_split.items():
        for i in range(count):
            speaker = speakers[i % len(speakers)]
            digits = rng.integers(0, 10, size=int(rng.integers(2, 4)))
            pieces = []
            for d in digits:
                pieces += [fsdd_take(int(d), speaker, int(rng.integers(0, 50))),
                           np.zeros(2400, np.float32)]
            audio = resample(np.concatenate(pieces), 16000, 48000)
            clip = f"common_voice_en_{19000000 + n}.mp3"
            soundfile.write(clips / clip, audio, 48000, format="MP3")
            client = hashlib.sha256(speaker.encode()).hexdigest()
            sentence = " ".join(DIGITS[d] for d in digits).capitalize() + "."
            translation = " ".join(GERMAN[d] for d in digits) + "."
            cv_rows.append("\t".join([client, clip, sentence, "2", "0", "", "", "", "en", ""]))
            value = "train_covost" if split == "train" and i % 3 == 0 else split
            covost_rows.append("\t".join([clip, translation, value, client]))
            n += 1
    (cv_root / "en" / "validated.tsv").write_text("\n".join(cv_rows) + "\n", encoding="utf-8")
    (covost_root / "covost_v2.en_de.tsv").write_text("\n".join(covost_rows) + "\n",
                                                     encoding="utf-8")


if __name__ == "__main__":
    kind, *dirs = sys.argv[1:]
    if kind == "librispeech":
        build_librispeech(Path(dirs[0]))
    elif kind == "slurp":
        build_slurp(Path(dirs[0]))
    elif kind == "covost2":
        build_covost2(Path(dirs[0]), Path(dirs[1]))
    else:
        sys.exit("usage: corpus_layouts.py librispeech DIR | slurp DIR | covost2 CV_DIR COVOST_DIR")
