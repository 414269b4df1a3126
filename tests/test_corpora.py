"""Data preparation of the scale corpora (LibriSpeech, SLURP, CoVoST 2) on look-alikes in
their exact released layouts (tests/corpus_layouts.py), and its errors on damaged copies."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
import soundfile

import corpus_layouts
from espnet_ofa.data.datadir import read_kaldi_table, validate_data_dir
from espnet_ofa.recipe import covost2, librispeech, slurp

pytestmark = pytest.mark.usefixtures("shared_data")


@pytest.fixture(scope="module")
def libri_root(tmp_path_factory) -> Path:
    return corpus_layouts.build_librispeech(tmp_path_factory.mktemp("libri"))


@pytest.fixture(scope="module")
def slurp_root(tmp_path_factory) -> Path:
    return corpus_layouts.build_slurp(tmp_path_factory.mktemp("slurp"))


@pytest.fixture(scope="module")
def covost_roots(tmp_path_factory):
    cv, cov = tmp_path_factory.mktemp("cv"), tmp_path_factory.mktemp("covost")
    corpus_layouts.build_covost2(cv, cov)
    return cv, cov


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


# ----------------------------------------------------------------------------- LibriSpeech

def test_librispeech_data_dirs(libri_root, tmp_path):
    counts = librispeech.prepare(
        libri_root, tmp_path / "data",
        {"train": ["train-clean-100"], "dev": ["dev-clean"], "test_clean": ["test-clean"]},
        download=False)
    assert counts == {"train": 24, "dev": 8, "test_clean": 8}
    train = tmp_path / "data" / "train"
    validate_data_dir(train)
    text = read_kaldi_table(train / "text")
    utt2spk = read_kaldi_table(train / "utt2spk")
    wav = read_kaldi_table(train / "wav.scp")
    utt = sorted(text)[0]
    speaker, chapter, _ = utt.split("-")
    assert utt2spk[utt] == f"{speaker}-{chapter}"
    assert text[utt] == text[utt].upper() and text[utt].strip()
    assert wav[utt].endswith(f"{speaker}/{chapter}/{utt}.flac")
    audio, rate = soundfile.read(wav[utt])
    assert rate == 16000 and audio.ndim == 1 and len(audio) > 1600
    spk2utt = read_kaldi_table(train / "spk2utt")
    assert sum(len(v.split()) for v in spk2utt.values()) == 24


def test_librispeech_parts_are_concatenated_and_limited(libri_root, tmp_path):
    counts = librispeech.prepare(libri_root, tmp_path / "data",
                                 {"all": ["train-clean-100", "dev-clean"]}, download=False,
                                 max_utts=30)
    assert counts == {"all": 30}


def test_librispeech_missing_part_names_the_way_out(libri_root, tmp_path):
    with pytest.raises(librispeech.LibriSpeechError, match="LIBRISPEECH.*download"):
        librispeech.prepare(libri_root, tmp_path / "d", {"x": ["test-other"]}, download=False)
    with pytest.raises(librispeech.LibriSpeechError, match="unknown LibriSpeech part"):
        librispeech.prepare(libri_root, tmp_path / "d", {"x": ["train-clean-99"]})


def test_librispeech_malformed_transcript_names_file_and_line(libri_root, tmp_path):
    root = _copy(libri_root, tmp_path)
    trans = sorted((root / "LibriSpeech" / "dev-clean").glob("*/*/*.trans.txt"))[0]
    lines = trans.read_text().splitlines()
    trans.write_text("\n".join([lines[0], lines[1].split()[0]] + lines[2:]) + "\n")
    with pytest.raises(librispeech.LibriSpeechError, match=rf"{trans.name}:2: malformed"):
        librispeech.list_part(root, "dev-clean")


def test_librispeech_missing_audio_and_bad_encoding(libri_root, tmp_path):
    root = _copy(libri_root, tmp_path)
    flac = sorted((root / "LibriSpeech" / "test-clean").glob("*/*/*.flac"))[0]
    flac.unlink()
    with pytest.raises(librispeech.LibriSpeechError, match=rf"{flac.name} is missing"):
        librispeech.list_part(root, "test-clean")
    trans = sorted((root / "LibriSpeech" / "dev-clean").glob("*/*/*.trans.txt"))[0]
    trans.write_bytes(trans.read_bytes() + b"\xff\xfe bad\n")
    with pytest.raises(librispeech.LibriSpeechError, match="not UTF-8"):
        librispeech.list_part(root, "dev-clean")


def test_librispeech_download_from_an_archive(libri_root, tmp_path):
    """The real download path, fed a file:// URL of a release-shaped archive."""
    archive = tmp_path / "dev-clean.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(libri_root / "LibriSpeech" / "dev-clean", arcname="LibriSpeech/dev-clean")
        tar.add(libri_root / "LibriSpeech" / "README.TXT", arcname="LibriSpeech/README.TXT")
    target = tmp_path / "corpus"
    librispeech.ensure_parts(target, ["dev-clean"], url_template=f"file://{tmp_path}/{{part}}.tar.gz")
    assert len(librispeech.list_part(target, "dev-clean")) == 8
    assert (target / "LibriSpeech" / "README.TXT").is_file()
    # A damaged archive fails with a message and leaves nothing that looks complete.
    (tmp_path / "test-clean.tar.gz").write_bytes(archive.read_bytes()[:300])
    with pytest.raises(librispeech.LibriSpeechError, match="unreadable.*download it again"):
        librispeech.ensure_parts(target, ["test-clean"],
                                 url_template=f"file://{tmp_path}/{{part}}.tar.gz")
    assert not (target / "LibriSpeech" / "test-clean").exists()
    assert not [p for p in target.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- SLURP

def test_slurp_data_dirs(slurp_root, tmp_path):
    counts = slurp.prepare(slurp_root, tmp_path / "data")
    # Headset and far-field recordings of every prompt.
    assert counts == {"train": 60, "devel": 20, "test": 20}
    train = tmp_path / "data" / "train"
    validate_data_dir(train)
    text = read_kaldi_table(train / "text")
    intents = {v.split()[0] for v in text.values()}
    assert intents == set(corpus_layouts.SLURP_INTENTS)
    assert all(v.split()[1:] and v.split()[1] == "option" for v in text.values())
    utt2spk = read_kaldi_table(train / "utt2spk")
    assert len(set(utt2spk.values())) == 3  # speakers from metadata.json
    assert all(u.startswith(s) for u, s in utt2spk.items())


def test_slurp_headset_only(slurp_root, tmp_path):
    counts = slurp.prepare(slurp_root, tmp_path / "data", train_recordings="headset",
                           eval_recordings="headset")
    assert counts == {"train": 30, "devel": 10, "test": 10}


def test_slurp_errors_name_file_and_line(slurp_root, tmp_path):
    root = _copy(slurp_root, tmp_path)
    jsonl = root / "dataset" / "slurp" / "devel.jsonl"
    lines = jsonl.read_text().splitlines()
    record = json.loads(lines[2])
    record["recordings"] = []
    jsonl.write_text("\n".join(lines[:2] + [json.dumps(record)] + lines[3:]) + "\n")
    with pytest.raises(slurp.SLURPError, match=r"devel.jsonl:3: .*no recordings"):
        slurp.list_split(root, "devel")
    jsonl.write_text("\n".join(lines[:4] + ['{"slurp_id": 1, "sentence": "x"'] + lines[5:]))
    with pytest.raises(slurp.SLURPError, match=r"devel.jsonl:5: not a JSON object"):
        slurp.list_split(root, "devel")
    jsonl.write_bytes("\n".join(lines).encode() + b"\n\xff\xfe\n")
    with pytest.raises(slurp.SLURPError, match=rf"devel.jsonl:{len(lines) + 1}: not UTF-8"):
        slurp.list_split(root, "devel")
    jsonl.write_text("\n".join(lines) + "\n")
    first = json.loads(lines[0])["recordings"][0]["file"]
    (root / "audio" / "slurp_real" / first).unlink()
    with pytest.raises(slurp.SLURPError, match=rf"devel.jsonl:1: audio .*{first} is missing"):
        slurp.list_split(root, "devel")


def test_slurp_missing_release_says_where(tmp_path):
    with pytest.raises(slurp.SLURPError, match="set SLURP"):
        slurp.prepare(tmp_path, tmp_path / "data")


# ----------------------------------------------------------------------------- CoVoST 2

def test_covost2_data_dirs(covost_roots, tmp_path):
    cv, cov = covost_roots
    counts = covost2.prepare(cv, cov, tmp_path / "data", download=False)
    assert counts == {"train": 30, "dev": 8, "test": 8}  # train_covost rows count as train
    train = tmp_path / "data" / "train"
    validate_data_dir(train)
    text = read_kaldi_table(train / "text")
    src = read_kaldi_table(train / "src_text")
    utt = sorted(text)[0]
    # German target as released (true case, punctuation); English source transcript.
    assert text[utt][0].isupper() and text[utt].endswith(".")
    assert set(text[utt].rstrip(".").split()) <= set(corpus_layouts.GERMAN)
    assert set(src[utt].rstrip(".").lower().split()) <= set(corpus_layouts.DIGITS)
    wav = read_kaldi_table(train / "wav.scp")[utt]
    audio, rate = soundfile.read(wav)
    assert wav.endswith(".mp3") and rate == 48000 and len(audio) > 48000 // 2


def test_covost2_errors_name_file_and_line(covost_roots, tmp_path):
    cv, cov = covost_roots
    cov2 = _copy(cov, tmp_path)
    table = cov2 / covost2.COVOST_TSV
    lines = table.read_text(encoding="utf-8").splitlines()
    fields = lines[3].split("\t")
    fields[2] = "validation"
    table.write_text("\n".join(lines[:3] + ["\t".join(fields)] + lines[4:]) + "\n")
    with pytest.raises(covost2.CoVoSTError, match=r"\.tsv:4: unknown split 'validation'"):
        covost2.prepare(cv, cov2, tmp_path / "d", download=False)
    table.write_bytes("\n".join(lines).encode() + b"\nx\xff\ty\ttrain\tz\n")
    with pytest.raises(covost2.CoVoSTError, match="not UTF-8"):
        covost2.prepare(cv, cov2, tmp_path / "d", download=False)
    cv2 = tmp_path / "cv2"
    shutil.copytree(cv, cv2)
    table.write_text("\n".join(lines) + "\n")
    clip = lines[5].split("\t")[0]
    (cv2 / "en" / "clips" / clip).unlink()
    with pytest.raises(covost2.CoVoSTError, match=rf"\.tsv:6: audio .*{clip} is missing"):
        covost2.prepare(cv2, cov2, tmp_path / "d", download=False)


def test_covost2_missing_inputs_name_the_settings(covost_roots, tmp_path):
    cv, _ = covost_roots
    with pytest.raises(covost2.CoVoSTError, match="COVOST2"):
        covost2.prepare(cv, tmp_path / "none", tmp_path / "d", download=False)
    with pytest.raises(covost2.CoVoSTError, match="COMMONVOICE"):
        covost2.list_splits(tmp_path / "none", covost_roots[1] / covost2.COVOST_TSV)


# ----------------------------------------------------------------------------- CLI (stage 1)

def _recipe_cli(*args: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "espnet_ofa.bin.recipe", *args],
                          capture_output=True, text=True)


def test_stage1_cli(libri_root, slurp_root, covost_roots, tmp_path):
    done = _recipe_cli("librispeech_data", "--librispeech", str(libri_root), "--data_dir",
                       str(tmp_path / "ls"), "--set", "train=train-clean-100,dev-clean",
                       "--set", "test_clean=test-clean", "--no_download")
    assert done.returncode == 0, done.stderr
    assert len(read_kaldi_table(tmp_path / "ls" / "train" / "text")) == 32
    done = _recipe_cli("slurp_data", "--slurp", str(slurp_root), "--data_dir",
                       str(tmp_path / "slurp"), "--train_recordings", "headset")
    assert done.returncode == 0, done.stderr
    assert len(read_kaldi_table(tmp_path / "slurp" / "train" / "text")) == 30
    cv, cov = covost_roots
    done = _recipe_cli("covost2_data", "--commonvoice", str(cv), "--covost2", str(cov),
                       "--data_dir", str(tmp_path / "cov"), "--no_download")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cov" / "dev" / "src_text").is_file()
    # Bad input: exit 1 with the reason, no traceback.
    done = _recipe_cli("librispeech_data", "--librispeech", str(tmp_path / "none"),
                       "--set", "train=train-clean-100", "--no_download")
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "LIBRISPEECH" in done.stderr
    assert "Traceback" not in done.stderr
