"""speechocean762: data preparation from the release's layout (fast), its bad inputs, the
download of an archive, PER scoring; and (slow) the smoke path of
egs2/speechocean762/{ssl1,asr1} end to end on ../shared/data/speechocean762_mini, both
tasks (BPE words scored as WER, phones as PER), with one downstream per task: the OFA
model trained at 40 ms and decoded at 40 and 80. The baselines (fixed-rate student,
log-mel) and the learnt rate are the same ssl.sh/s2t.sh stages whatever the corpus; they are
trained end to end once in the suite, in the FSDD recipe run (test_recipe_integration.py).

Set ESPNET_OFA_SKIP_RECIPE_E2E=1 to skip the end-to-end test.
"""

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import soundfile

from conftest import recipe_env
from espnet_ofa.data.datadir import read_kaldi_table, validate_data_dir
from espnet_ofa.recipe import speechocean762 as so
from espnet_ofa.recipe.results import SMOKE_BANNER
from espnet_ofa.recipe.scoring import score

REPO = Path(__file__).resolve().parents[1]
MINI = REPO.parent / "shared" / "data" / "speechocean762_mini"

needs_mini = pytest.mark.skipif(not (MINI / "train" / "wav.scp").is_file(),
                                reason=f"speechocean762_mini not found at {MINI}")


def _table(path: Path) -> dict:
    return dict(line.split(None, 1) for line in path.read_text().splitlines())


def _write_table(path: Path, table: dict, sep: str = "\t") -> None:
    path.write_text("".join(f"{k}{sep}{v}\n" for k, v in sorted(table.items())))


def small_corpus(dst: Path, speakers: dict = None, utts: int = 2, unlabelled: bool = True) -> Path:
    """A copy of the mini corpus in the release's layout with ``speakers`` ({split: n}) and
    ``utts`` per speaker (WAVs linked), plus one unlabelled WAV of a train speaker and one of
    a test speaker (copies of their first recording under a new name)."""
    speakers = speakers or {"train": 4, "test": 1}
    keep_utts = []
    for split, n in speakers.items():
        (dst / split).mkdir(parents=True)
        spk2utt = _table(MINI / split / "spk2utt")
        chosen = {s: spk2utt[s].split()[:utts] for s in sorted(spk2utt)[:n]}
        utt_ids = {u for us in chosen.values() for u in us}
        keep_utts += sorted(utt_ids)
        for name in ("wav.scp", "text", "utt2spk"):
            _write_table(dst / split / name, {k: v for k, v in _table(MINI / split / name).items()
                                              if k in utt_ids})
        for name in ("spk2age", "spk2gender"):
            _write_table(dst / split / name, {k: v for k, v in _table(MINI / split / name).items()
                                              if k in chosen})
        _write_table(dst / split / "spk2utt", {s: " ".join(us) for s, us in chosen.items()}, " ")
        for utt in utt_ids:
            rel = _table(MINI / split / "wav.scp")[utt]
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            (dst / rel).symlink_to(MINI / rel)
    (dst / "resource").mkdir()
    shutil.copy(MINI / "resource" / "lexicon.txt", dst / "resource")
    lines = [line for line in (MINI / "resource" / "text-phone").read_text().splitlines()
             if line.split(".")[0] in set(keep_utts)]
    (dst / "resource" / "text-phone").write_text("\n".join(lines) + "\n")
    if unlabelled:
        for split in speakers:
            first = sorted(_table(dst / split / "wav.scp").items())[0][1]
            src = dst / first
            shutil.copy(MINI / first, src.parent / f"{src.stem[:-4]}9999.WAV")
    return dst


@pytest.fixture
def corpus(tmp_path):
    if not (MINI / "train" / "wav.scp").is_file():
        pytest.skip(f"speechocean762_mini not found at {MINI}")
    return small_corpus(tmp_path / "speechocean762")


def test_phones_lose_stress_and_position_tags():
    assert so.phones_of("K_B AO0_I L_E") == ["K", "AO", "L"]
    assert so.phones_of("AH0_S") == ["AH"]
    assert so.phones_of("EH1_B NG_I TH_E") == ["EH", "NG", "TH"]


def test_data_dirs(corpus, tmp_path):
    counts = so.prepare(corpus, tmp_path / "data", n_dev_speakers=1, download=False)
    data = tmp_path / "data"
    assert counts == {"train": 6, "train_phone": 6, "dev": 2, "dev_phone": 2, "test": 2,
                      "test_phone": 2, "pretrain": 6 + 1}
    spk = {name: set(read_kaldi_table(data / name / "utt2spk").values())
           for name in ("train", "dev", "test", "pretrain")}
    assert len(spk["dev"]) == 1 and len(spk["train"]) == 3 and len(spk["test"]) == 1
    assert not spk["dev"] & spk["train"] and not spk["test"] & (spk["train"] | spk["dev"])
    # pretrain: train plus the unlabelled WAV of a train speaker, never a test or dev voice.
    assert spk["pretrain"] <= spk["train"]
    pretrain = read_kaldi_table(data / "pretrain" / "wav.scp")
    assert {u for u in pretrain if u.endswith("9999")} and not (data / "pretrain" / "text").exists()
    for name in ("train", "dev", "test", "train_phone", "dev_phone", "test_phone"):
        validate_data_dir(data / name, required=("wav.scp", "text", "utt2spk"))
    words = read_kaldi_table(data / "train" / "text")
    phones = read_kaldi_table(data / "train_phone" / "text")
    assert set(words) == set(phones) == set(read_kaldi_table(data / "train" / "wav.scp"))
    original = _table(corpus / "train" / "text")
    assert all(words[u] == original[u].strip() for u in words)
    assert all(set(p.split()) <= so.PHONES for p in phones.values())
    # The word-level phones of resource/text-phone, in order, tags and stress removed.
    utt = sorted(phones)[0]
    tagged = [line.split("\t", 1)[1] for line in
              (corpus / "resource" / "text-phone").read_text().splitlines()
              if line.startswith(utt + ".")]
    assert phones[utt] == " ".join(p for t in tagged for p in so.phones_of(t))
    for path in read_kaldi_table(data / "test" / "wav.scp").values():
        assert Path(path).is_absolute() and soundfile.info(path).samplerate == 16000


def test_dev_speakers_spread_over_ages():
    train = [so.Utterance(f"{s}0001", s, Path("x")) for s in ("a", "b", "c", "d", "e", "f")]
    ages = {"a": 6, "b": 7, "c": 9, "d": 20, "e": 25, "f": 40}
    assert so.dev_speakers(train, ages, 2) == ["b", "e"]
    with pytest.raises(so.SpeechOcean762Error, match="between 1 and 5"):
        so.dev_speakers(train, ages, 6)


def test_missing_wav(corpus, tmp_path):
    rel = sorted(_table(corpus / "test" / "wav.scp").items())[0]
    (corpus / rel[1].strip()).unlink()
    with pytest.raises(so.SpeechOcean762Error, match=f"audio of utterance {rel[0]}.*missing.*download"):
        so.prepare(corpus, tmp_path / "data", n_dev_speakers=1, download=False)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("bad", ["../elsewhere/000010011.WAV", "/tmp/000010011.WAV"])
def test_wav_scp_path_outside_the_corpus(corpus, tmp_path, bad):
    scp = _table(corpus / "train" / "wav.scp")
    utt = sorted(scp)[1]
    scp[utt] = bad
    _write_table(corpus / "train" / "wav.scp", scp)
    with pytest.raises(so.SpeechOcean762Error, match=f"{utt} points to .*outside the corpus"):
        so.read_corpus(corpus)


def test_unknown_character_in_a_transcript(corpus):
    text = _table(corpus / "train" / "text")
    utt = sorted(text)[2]
    text[utt] = "WE CALL IT BÉAR"
    _write_table(corpus / "train" / "text", text)
    with pytest.raises(so.SpeechOcean762Error,
                       match=r"text:3: utterance .* character 'É' \(U\+00C9\).*A-Z"):
        so.read_corpus(corpus)


def test_speaker_in_train_and_test(corpus):
    train_spk = sorted(_table(corpus / "train" / "spk2age"))[0]
    utt2spk = _table(corpus / "test" / "utt2spk")
    utt2spk[sorted(utt2spk)[0]] = train_spk
    _write_table(corpus / "test" / "utt2spk", utt2spk, " ")
    ages = _table(corpus / "test" / "spk2age")
    ages[train_spk] = "6"
    _write_table(corpus / "test" / "spk2age", ages)
    with pytest.raises(so.SpeechOcean762Error,
                       match=f"speaker {train_spk} is in both .*train and .*test"):
        so.read_corpus(corpus)


def test_phones_that_do_not_match_the_words(corpus):
    lines = (corpus / "resource" / "text-phone").read_text().splitlines()
    (corpus / "resource" / "text-phone").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(so.SpeechOcean762Error, match="numbered|words of phones"):
        so.read_corpus(corpus)
    lines[0] = lines[0].split("\t")[0] + "\tW_B XX0_E"
    (corpus / "resource" / "text-phone").write_text("\n".join(lines) + "\n")
    with pytest.raises(so.SpeechOcean762Error, match=r"text-phone:1: unknown phone 'XX'"):
        so.read_corpus(corpus)


def test_missing_corpus_names_the_setting(tmp_path):
    with pytest.raises(so.SpeechOcean762Error, match="SPEECHOCEAN762 .*db.sh"):
        so.prepare(tmp_path / "nothing", tmp_path / "data", download=False)


def test_download_from_an_archive(corpus, tmp_path):
    archive = tmp_path / "speechocean762.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1, dereference=True) as tar:
        tar.add(corpus, arcname="speechocean762")
    root = tmp_path / "downloads" / "speechocean762"
    counts = so.prepare(root, tmp_path / "data", n_dev_speakers=1, url=archive.as_uri())
    assert counts["test"] == 2 and so.has_corpus(root)
    assert sorted(p.name for p in root.parent.iterdir()) == ["speechocean762"]  # no leftovers
    # A broken archive: a clear error, nothing left that looks finished.
    archive.write_bytes(b"not a tar archive")
    other = tmp_path / "other" / "speechocean762"
    with pytest.raises(so.SpeechOcean762Error, match="unreadable.*SPEECHOCEAN762"):
        so.download_corpus(other, archive.as_uri(), progress=False)
    assert not so.has_corpus(other) and not list(other.parent.glob("*.tar.gz*"))
    with pytest.raises(so.SpeechOcean762Error, match="cannot download.*SPEECHOCEAN762"):
        so.download_corpus(other, (tmp_path / "missing.tar.gz").as_uri(), progress=False)


def test_stage1_cli_reports_bad_input(corpus, tmp_path):
    text = _table(corpus / "test" / "text")
    text[sorted(text)[0]] = "WE C@LL"
    _write_table(corpus / "test" / "text", text)
    out = subprocess.run(
        [sys.executable, "-m", "espnet_ofa.bin.recipe", "speechocean762_data",
         "--speechocean762", str(corpus), "--data_dir", str(tmp_path / "data"), "--no_download"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 1 and out.stderr.startswith("error: ")
    assert "test/text:1:" in out.stderr and "'@'" in out.stderr


def test_per_scoring():
    ref = {"a": "W IY K AO L", "b": "IH T"}
    hyp = {"a": "W IY K L", "b": "IH T"}
    result = score("asr", ref, hyp, metric="PER")
    assert result["metric"] == "PER" and result["PER"] == pytest.approx(100 / 7)
    assert "WER" not in result and "CER" not in result
    assert result["summary"].startswith("PER 14.29%")
    with pytest.raises(ValueError, match="WER or PER"):
        score("asr", ref, hyp, metric="BLEU")


# ----------------------------------------------------------------------------- end to end

def _result_rows(results_md: Path):
    return [line.strip("|").split("|") for line in results_md.read_text().splitlines()
            if line.startswith("|") and not line.startswith(("|dataset", "|---"))]


# The smoke run narrowed to what only this recipe has (its data, BPE words and phones, the
# teacher trained on its pretrain set): the OFA downstream trained at 40 ms, no fixed-rate
# student, no log-mel or learnt-rate downstream, one job per data stage (each job is a
# Python start-up; several jobs run in the LibriSpeech smoke).
SMOKE_TEST_ARGS = ("--train_frame_periods 40 --fixed_rate_periods '' "
                   "--asr_configs conf/smoke/train_asr_ofa.yaml "
                   "--ssl_recipe_opts '--smoke true --nj 1'")


@needs_mini
@pytest.mark.skipif(os.environ.get("ESPNET_OFA_SKIP_RECIPE_E2E", "") not in ("", "0"),
                    reason="ESPNET_OFA_SKIP_RECIPE_E2E is set")
def test_smoke_recipes_end_to_end(tmp_path):
    """asr1 --smoke true (which runs ssl1 --smoke true first) on the mini corpus, one
    downstream per task (SMOKE_TEST_ARGS)."""
    root = tmp_path / "egs2"
    (root / "speechocean762").mkdir(parents=True)
    (root / "TEMPLATE").symlink_to(REPO / "egs2" / "TEMPLATE")
    skip = shutil.ignore_patterns("data", "dump", "exp", "downloads", "RESULTS*")
    for name in ("ssl1", "asr1"):
        shutil.copytree(REPO / "egs2" / "speechocean762" / name, root / "speechocean762" / name,
                        symlinks=True, ignore=skip)
    asr = root / "speechocean762" / "asr1"
    env = recipe_env(SPEECHOCEAN762=MINI, PYTHONPATH=REPO)
    out = subprocess.run(["bash", "-c", f"./run.sh --smoke true {SMOKE_TEST_ARGS}"], cwd=asr, env=env,
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    check_smoke_outputs(root / "speechocean762")


def check_smoke_outputs(recipes: Path) -> None:
    """What the smoke run of egs2/speechocean762/{ssl1,asr1} must leave behind."""
    ssl, asr = recipes / "ssl1", recipes / "asr1"
    assert (ssl / "exp" / "ssl_train_ofa_tiny" / "valid.loss.best.pth").is_file()
    assert (ssl / "exp" / "hubert_train_hubert_tiny" / "valid.loss.best.pth").is_file()
    # Pretraining never hears a test or dev voice; the data dumps keep every sample.
    pretrain_spk = set(read_kaldi_table(ssl / "data" / "pretrain" / "utt2spk").values())
    assert pretrain_spk and not pretrain_spk & set(_table(MINI / "test" / "spk2age"))
    assert not pretrain_spk & set(read_kaldi_table(ssl / "data" / "dev" / "utt2spk").values())
    lengths = read_kaldi_table(asr / "dump" / "raw" / "test_phone" / "utt2num_samples")
    wavs = read_kaldi_table(asr / "data" / "test_phone" / "wav.scp")
    assert len(lengths) == 24 and all(int(lengths[u]) == soundfile.info(wavs[u]).frames
                                      for u in lengths)

    for task, metric, results in (("word", "WER", "RESULTS.md"), ("phone", "PER", "RESULTS_phone.md")):
        scored = sorted((asr / "exp" / task).glob("*/decode_*/*/*/result.json"))
        # The OFA downstream trained at 40 ms, decoded at its own period only (run.sh sets
        # --decode_own_period true; switching periods at run time is tested on FSDD).
        assert {(p.parts[-5], p.parts[-3]) for p in scored} == {
            ("asr_train_asr_ofa_p40", "p40")}, scored
        for path in scored:
            r = json.loads(path.read_text())
            assert r["metric"] == metric and 0 <= r[metric] and r["num_utts"] == 24
            assert not r["missing"]
        assert (asr / results).is_file() and (asr / results.replace(".md", ".png")).is_file()
        text = (asr / results).read_text()
        assert f"|{metric} (%)|" in text and SMOKE_BANNER in text  # labelled: not a result
        periods = {row[1].strip() for row in _result_rows(asr / results)}
        assert periods == {"40"}, periods
    phone_tokens = (asr / "data" / "en_phone_token_list" / "word" / "tokens.txt").read_text().split()
    assert set(phone_tokens) - {"<blank>", "<unk>", "<sos/eos>"} <= so.PHONES
