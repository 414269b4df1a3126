"""Unit tests of the recipe data modules: FSDD listing/splits/download, the task data
dirs (connected digits, SLU intents, ST translations), formatting, filtering, speed
perturbation, token lists and k-means unit labels. A small synthetic FSDD (tones) keeps
them fast and independent of the real corpus."""

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet_ofa.data.datadir import DataDirError, read_kaldi_table, validate_data_dir
from espnet_ofa.recipe import fsdd as F
from espnet_ofa.recipe.format import filter_lengths, format_data_dir, parse_fs, speed_perturb
from espnet_ofa.recipe.prepare import (
    GERMAN_WORDS,
    INTENTS,
    PrepareConfig,
    plan_connected,
    prepare_fsdd,
    synthesize,
)
from espnet_ofa.recipe.tokens import build_token_list, make_token_list, tokenize, unit_token_list

SPEAKERS = ("alice", "bob", "carol")


def make_fake_fsdd(root: Path, speakers=SPEAKERS, takes=12, digits=range(10)) -> Path:
    """recordings/{d}_{spk}_{i}.wav: 8 kHz tones of 0.25-0.4 s."""
    rec = root / "recordings"
    rec.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for s, spk in enumerate(speakers):
        for d in digits:
            for i in range(takes):
                n = int(8000 * (0.25 + 0.15 * rng.random()))
                t = np.arange(n) / 8000
                wav = 0.3 * np.sin(2 * np.pi * (200 + 50 * d + 10 * s) * t)
                sf.write(rec / f"{d}_{spk}_{i}.wav", wav.astype(np.float32), 8000,
                         subtype="PCM_16")
    return root


@pytest.fixture(scope="module")
def fake_fsdd(tmp_path_factory):
    return make_fake_fsdd(tmp_path_factory.mktemp("fsdd"))


# ------------------------------------------------------------------------------ fsdd


def test_parse_name_and_utt_id():
    t = F.parse_name("/x/recordings/3_jackson_12.wav")
    assert (t.speaker, t.digit, t.index, t.word) == ("jackson", 3, 12, "three")
    assert t.utt_id == "jackson_3_12"
    with pytest.raises(ValueError, match="not an FSDD file name"):
        F.parse_name("notes.wav")


def test_list_takes_missing_dir_says_what_to_do(tmp_path):
    with pytest.raises(F.FSDDError, match="no FSDD recordings.*db.sh"):
        F.list_takes(tmp_path)


def test_split_usual_and_heldout(fake_fsdd):
    takes = F.list_takes(fake_fsdd)
    splits = F.split_takes(takes, heldout_speaker="carol")
    assert set(splits) == {"train", "dev", "test", "test_carol"}
    assert {t.index for t in splits["test"]} == set(range(5))
    assert {t.index for t in splits["dev"]} == set(range(5, 10))
    assert {t.index for t in splits["train"]} == {10, 11}
    assert {t.speaker for t in splits["train"]} == {"alice", "bob"}
    assert len(splits["test_carol"]) == 10 * 12  # every take of the held-out speaker
    small = F.split_takes(takes, heldout_speaker="carol", dev_takes=2, heldout_takes=1)
    assert {t.index for t in small["dev"]} == {5, 6}
    assert len(small["test_carol"]) == 10
    with pytest.raises(F.FSDDError, match="not in FSDD"):
        F.split_takes(takes, heldout_speaker="nobody")
    with pytest.raises(F.FSDDError, match="cannot also be a train speaker"):
        F.split_takes(takes, heldout_speaker="bob", speakers=["alice", "bob"])


def test_download_from_archive_atomically(tmp_path, fake_fsdd):
    archive = tmp_path / "fsdd.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for f in sorted((fake_fsdd / "recordings").glob("*_alice_*.wav")):
            tar.add(f, arcname=f"free-spoken-digit-dataset-1.0.10/recordings/{f.name}")
        readme = b"not a recording"
        info = tarfile.TarInfo("free-spoken-digit-dataset-1.0.10/README.md")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
    root = tmp_path / "downloads" / "fsdd"
    F.ensure_fsdd(root, url=archive.as_uri())
    assert len(list((root / "recordings").glob("*.wav"))) == 120
    assert not list(root.glob(".fsdd.*"))  # no temporary leftovers
    # Present: not downloaded again (a bad URL is never touched).
    F.ensure_fsdd(root, url="file:///nonexistent.tar.gz")


def test_download_failure_names_the_offline_fix(tmp_path):
    with pytest.raises(F.FSDDError, match="Without internet.*FSDD in db.sh"):
        F.download_fsdd(tmp_path / "fsdd", url=(tmp_path / "missing.tar.gz").as_uri())
    assert not (tmp_path / "fsdd" / "recordings").exists()


# ------------------------------------------------------------------------------ prepare


def test_plan_connected_uses_every_take_once(fake_fsdd):
    takes = [t for t in F.list_takes(fake_fsdd) if t.index < 3]
    utts = plan_connected(takes, 2, 7, seed=1)
    used = [t for u in utts for t in u.takes]
    assert sorted(used) == sorted(takes)
    assert all(2 <= len(u.takes) <= 7 + 1 for u in utts)
    assert all(len({t.speaker for t in u.takes}) == 1 for u in utts)
    assert [u.utt_id for u in utts] == [u.utt_id for u in plan_connected(takes, 2, 7, seed=1)]
    assert utts[0].utt_id.startswith(utts[0].speaker + "_")


def test_synthesize_joins_takes_with_silences(fake_fsdd):
    takes = [t for t in F.list_takes(fake_fsdd) if t.speaker == "alice" and t.index == 0][:3]
    utt = plan_connected(takes, 3, 3)[0]
    wav = synthesize(utt, seed=0)
    total = sum(sf.info(t.path).frames for t in utt.takes)
    # 2 gaps of 100-300 ms and 2 edges of 50-150 ms at 8 kHz.
    assert total + 8000 * 0.3 <= len(wav) <= total + 8000 * 0.9
    assert wav.dtype == np.float32
    np.testing.assert_array_equal(wav, synthesize(utt, seed=0))


@pytest.mark.parametrize("task", ["ssl", "asr", "slu", "st"])
def test_prepare_each_task(tmp_path, fake_fsdd, task):
    counts = prepare_fsdd(PrepareConfig(task=task, fsdd=str(fake_fsdd),
                                        data_dir=str(tmp_path / "data"), heldout_speaker="carol",
                                        download=False))
    assert set(counts) == {"train", "dev", "test", "test_carol"}
    for name in counts:
        d = tmp_path / "data" / name
        validate_data_dir(d, required=("wav.scp", "text", "utt2spk", "spk2utt"))
        text = read_kaldi_table(d / "text")
        first = next(iter(text.values())).split()
        if task == "slu":
            assert first[0] in INTENTS and len(first) == 2
            assert INTENTS.index(first[0]) == F.DIGIT_WORDS.index(first[1])
        elif task == "st":
            assert all(w in GERMAN_WORDS for w in first)
            src = read_kaldi_table(d / "src_text")
            assert [GERMAN_WORDS[F.DIGIT_WORDS.index(w)] for w in src[next(iter(text))].split()] == first
        elif task == "asr":
            assert 2 <= len(first) <= 8 and all(w in F.DIGIT_WORDS for w in first)
    assert "synthetic" in (tmp_path / "data" / "README.txt").read_text()
    if task in ("ssl", "slu"):
        assert counts["train"] == 2 * 10 * 2


@pytest.mark.parametrize("task", ["asr", "st"])
def test_prepare_train_single_takes(tmp_path, fake_fsdd, task):
    """--train_single_takes true: train has the connected utterances and every train take
    alone; the other splits are unchanged."""
    conf = dict(task=task, fsdd=str(fake_fsdd), heldout_speaker="carol", download=False)
    plain = prepare_fsdd(PrepareConfig(data_dir=str(tmp_path / "a"), **conf))
    both = prepare_fsdd(PrepareConfig(data_dir=str(tmp_path / "b"), train_single_takes=True,
                                      **conf))
    assert both["train"] == plain["train"] + 2 * 10 * 2  # 2 speakers x 10 digits x 2 takes
    assert {k: v for k, v in both.items() if k != "train"} == {
        k: v for k, v in plain.items() if k != "train"}
    d = tmp_path / "b/train"
    validate_data_dir(d, required=("wav.scp", "text", "utt2spk", "spk2utt"))
    text = read_kaldi_table(d / "text")
    singles = {u: t for u, t in text.items() if len(t.split()) == 1}
    assert len(singles) == 2 * 10 * 2
    connected = read_kaldi_table(tmp_path / "a/train/text")
    assert {u: t for u, t in text.items() if u in connected} == connected
    if task == "st":
        src = read_kaldi_table(d / "src_text")
        assert all(GERMAN_WORDS[F.DIGIT_WORDS.index(src[u])] == t for u, t in singles.items())


def test_prepare_rerun_is_identical(tmp_path, fake_fsdd):
    conf = dict(task="asr", fsdd=str(fake_fsdd), data_dir=str(tmp_path / "data"),
                heldout_speaker="carol", download=False)
    prepare_fsdd(PrepareConfig(**conf))
    first = (tmp_path / "data/train/text").read_text()
    wav = next(iter(read_kaldi_table(tmp_path / "data/train/wav.scp").values()))
    audio = Path(wav).read_bytes()
    prepare_fsdd(PrepareConfig(**conf))
    assert (tmp_path / "data/train/text").read_text() == first
    assert Path(wav).read_bytes() == audio


# ------------------------------------------------------------------------------ format


def _data_dir(tmp_path, fake_fsdd, task="asr"):
    prepare_fsdd(PrepareConfig(task=task, fsdd=str(fake_fsdd), data_dir=str(tmp_path / "data"),
                               heldout_speaker="carol", download=False))
    return tmp_path / "data"


def test_parse_fs():
    assert parse_fs("16k") == 16000 and parse_fs(8000) == 8000 and parse_fs("22.05k") == 22050
    with pytest.raises(ValueError, match="not a sample rate"):
        parse_fs("fast")


def test_format_cli_pairs_each_data_dir_with_its_destination(tmp_path, capsys):
    from espnet_ofa.bin.recipe import main as recipe_main

    assert recipe_main(["format", "--src", "data/a", "data/b", "--dst", str(tmp_path)]) == 1
    assert "2 --src but 1 --dst" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_format_resamples_to_16k_and_keeps_tables(tmp_path, fake_fsdd):
    data = _data_dir(tmp_path, fake_fsdd, "st")
    n = format_data_dir(data / "dev", tmp_path / "dump/dev", "16k",
                        required=("wav.scp", "text", "src_text"), progress=False)
    dump = tmp_path / "dump/dev"
    validate_data_dir(dump, required=("wav.scp", "text", "src_text", "utt2num_samples"),
                      sample_rate=16000)
    assert n == len(read_kaldi_table(dump / "wav.scp"))
    utt, path = next(iter(read_kaldi_table(dump / "wav.scp").items()))
    src = read_kaldi_table(data / "dev/wav.scp")[utt]
    assert sf.info(path).frames == pytest.approx(2 * sf.info(src).frames, abs=2)
    assert int(read_kaldi_table(dump / "utt2num_samples")[utt]) == sf.info(path).frames
    assert (dump / "text").read_text() == (data / "dev/text").read_text()


@pytest.mark.parametrize("breakage, message", [
    ("missing_wav", r"wav.scp:\d+: audio file .* does not exist"),
    ("unsorted", r"wav.scp:2: ids are not sorted"),
    ("mismatched", r"text:\d+: id 'zzz_extra' is not in wav.scp"),
    ("empty_text", r"text:1: empty transcript"),
])
def test_format_stops_on_bad_data_dirs(tmp_path, fake_fsdd, breakage, message):
    data = _data_dir(tmp_path, fake_fsdd) / "dev"
    wav = (data / "wav.scp").read_text().splitlines()
    text = (data / "text").read_text().splitlines()
    if breakage == "missing_wav":
        wav[3] = wav[3].split()[0] + " /nonexistent/x.wav"
        (data / "wav.scp").write_text("\n".join(wav) + "\n")
    elif breakage == "unsorted":
        wav[0], wav[1] = wav[1], wav[0]
        (data / "wav.scp").write_text("\n".join(wav) + "\n")
    elif breakage == "mismatched":
        (data / "text").write_text("\n".join(text + ["zzz_extra one two"]) + "\n")
    else:
        text[0] = text[0].split()[0]
        (data / "text").write_text("\n".join(text) + "\n")
    with pytest.raises(DataDirError, match=message):
        format_data_dir(data, tmp_path / "dump/dev", required=("wav.scp", "text"), progress=False)
    assert not (tmp_path / "dump/dev/wav.scp").exists()  # nothing half-written


def test_filter_lengths(tmp_path, fake_fsdd):
    data = _data_dir(tmp_path, fake_fsdd, "slu")
    format_data_dir(data / "dev", tmp_path / "org/dev", required=("wav.scp", "text"),
                    progress=False)
    lengths = {u: int(v) for u, v in read_kaldi_table(tmp_path / "org/dev/utt2num_samples").items()}
    cut = sorted(lengths.values())[len(lengths) // 2] / 16000
    kept, dropped = filter_lengths(tmp_path / "org/dev", tmp_path / "dev", "16k", 0.1, cut)
    assert kept + len(dropped) == len(lengths)
    assert all(lengths[u] / 16000 > cut for u in dropped)
    validate_data_dir(tmp_path / "dev", required=("wav.scp", "text", "utt2spk", "spk2utt"))
    with pytest.raises(DataDirError, match="every utterance was filtered out"):
        filter_lengths(tmp_path / "org/dev", tmp_path / "none", "16k", 100.0, 200.0)


def test_speed_perturb(tmp_path, fake_fsdd):
    data = _data_dir(tmp_path, fake_fsdd)
    n = speed_perturb(data / "dev", tmp_path / "dev_sp", [0.9, 1.0, 1.1], progress=False)
    src = read_kaldi_table(data / "dev/wav.scp")
    out = read_kaldi_table(tmp_path / "dev_sp/wav.scp")
    assert n == 3 * len(src)
    utt = next(iter(src))
    frames = sf.info(out[utt]).frames
    assert sf.info(out[f"sp1.1-{utt}"]).frames == pytest.approx(frames / 1.1, abs=2)
    assert sf.info(out[f"sp0.9-{utt}"]).frames == pytest.approx(frames / 0.9, abs=2)
    text = read_kaldi_table(tmp_path / "dev_sp/text")
    assert text[f"sp0.9-{utt}"] == text[utt]
    spk = read_kaldi_table(tmp_path / "dev_sp/utt2spk")
    assert spk[f"sp0.9-{utt}"] == "sp0.9-" + spk[utt]
    validate_data_dir(tmp_path / "dev_sp", required=("wav.scp", "text", "utt2spk", "spk2utt"))


# ------------------------------------------------------------------------------ tokens


def test_tokenize_and_token_lists(tmp_path):
    assert tokenize("one  two", "char") == ["o", "n", "e", "<space>", "t", "w", "o"]
    assert tokenize("one two", "word") == ["one", "two"]
    tokens = build_token_list(["two one", "two"], "word")
    assert tokens == ["<blank>", "<unk>", "two", "one", "<sos/eos>"]
    assert build_token_list(["a"], "char", add_blank=False) == ["<unk>", "a", "<sos/eos>"]
    (tmp_path / "text").write_text("u1 drei eins\nu2 fünf\n")
    out = make_token_list([tmp_path / "text"], tmp_path / "word/tokens.txt", "word")
    assert out.read_text().split() == ["<blank>", "<unk>", "drei", "eins", "fünf", "<sos/eos>"]
    bpe = make_token_list([tmp_path / "text"], tmp_path / "bpe/tokens.txt", "bpe", nbpe=12)
    assert (tmp_path / "bpe/bpe.model").is_file()
    lines = bpe.read_text().split()
    assert lines[:2] == ["<blank>", "<unk>"] and lines[-1] == "<sos/eos>"
    assert unit_token_list(3) == ["0", "1", "2", "<unk>", "<sos/eos>"]
    with pytest.raises(ValueError, match="token_type"):
        make_token_list([tmp_path / "text"], tmp_path / "x.txt", "phn")


def test_kmeans_labels_match_the_hubert_frame_grid(tmp_path, fake_fsdd):
    from espnet_ofa.recipe.units import kmeans_labels

    data = _data_dir(tmp_path, fake_fsdd, "ssl")
    format_data_dir(data / "dev", tmp_path / "dev", progress=False)
    km = kmeans_labels(tmp_path / "dev", tmp_path / "units/text.km", n_clusters=4,
                       token_list=tmp_path / "units/tokens.txt")
    labels = read_kaldi_table(tmp_path / "units/text.km")
    lengths = read_kaldi_table(tmp_path / "dev/utt2num_samples")
    for utt, units in labels.items():
        assert len(units.split()) == (int(lengths[utt]) - 400) // 320 + 1
        assert {int(u) for u in units.split()} <= set(range(4))
    assert (tmp_path / "units/tokens.txt").read_text().split()[-2:] == ["<unk>", "<sos/eos>"]
    again = kmeans_labels(tmp_path / "dev", tmp_path / "units/again.km", kmeans=km)
    assert again == km
    assert (tmp_path / "units/again.km").read_text() == (tmp_path / "units/text.km").read_text()
