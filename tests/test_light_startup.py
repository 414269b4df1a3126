"""The recipe's light steps start without torch, torchaudio or ESPnet, and still do their job.

A recipe run calls these steps (a decoding's resume check and merge, data-dir formatting of
16 kHz audio, length filtering, scoring, ...) as separate processes, dozens of times; one
that imports torch or ESPnet pays seconds each time for work that needs neither. Each step
runs here once, as the shell calls it, in a fresh interpreter on a small real workspace
(``tools/benchmark_startup.py`` builds it and times the steps); a test checks what the step
wrote and that it imported none of them, so that a later import cannot make it heavy again
unnoticed.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import soundfile as sf

from espnet_ofa.data import read_kaldi_table

_PATH = Path(__file__).resolve().parents[1] / "tools" / "benchmark_startup.py"
_spec = importlib.util.spec_from_file_location("benchmark_startup", _PATH)
startup = importlib.util.module_from_spec(_spec)
sys.modules["benchmark_startup"] = startup
_spec.loader.exec_module(startup)

LIGHT = [s.name for s in startup.steps(startup.SHARED_DATA / "fsdd") if s.light]


@pytest.fixture(scope="module")
def ran(tmp_path_factory, shared_data):
    """Every light step run once, in order, on one workspace: (workspace, {name: Run})."""
    root = tmp_path_factory.mktemp("startup")
    startup.build_workspace(root, shared_data / "an4_small")
    steps = [s for s in startup.steps(shared_data / "fsdd") if s.light]
    return root, {step.name: (step, step.run(root)) for step in steps}


def check_fsdd_data(root: Path, run) -> None:
    assert "progress: data/test: " in run.stdout
    for name in ("train", "dev", "test"):
        wavs = read_kaldi_table(root / "data" / name / "wav.scp")
        texts = read_kaldi_table(root / "data" / name / "text")
        assert wavs and set(wavs) == set(texts)
        first = sorted(wavs)[0]
        assert sf.info(wavs[first]).samplerate == 8000  # FSDD as released; stage 3 resamples
        assert set(texts[first].split()) <= {"zero", "one", "two", "three", "four", "five",
                                             "six", "seven", "eight", "nine"}


def check_format(root: Path, run) -> None:
    src = read_kaldi_table(root / "data" / "an4" / "wav.scp")
    dst = root / "dump" / "raw" / "org" / "an4"
    wavs = read_kaldi_table(dst / "wav.scp")
    lengths = read_kaldi_table(dst / "utt2num_samples")
    assert set(wavs) == set(lengths) == set(src)
    for utt in sorted(src)[:3]:  # 16-bit 16 kHz in, the same samples out
        original, rate = sf.read(src[utt], dtype="int16")
        written, written_rate = sf.read(wavs[utt], dtype="int16")
        assert rate == written_rate == 16000
        assert (written == original).all() and int(lengths[utt]) == len(original)
    assert read_kaldi_table(dst / "text") == read_kaldi_table(root / "data" / "an4" / "text")
    again = root / "dump" / "raw" / "org" / "an4_again"  # the second --src/--dst pair
    assert read_kaldi_table(again / "utt2num_samples") == lengths


def check_filter(root: Path, run) -> None:
    lengths = read_kaldi_table(root / "dump" / "raw" / "org" / "an4" / "utt2num_samples")
    kept = read_kaldi_table(root / "dump" / "raw" / "an4" / "wav.scp")
    expected = {u for u, n in lengths.items() if 0.1 <= int(n) / 16000 <= 20.0}
    assert set(kept) == expected
    assert f"kept {len(expected)}, filtered out {len(lengths) - len(expected)}" in run.stdout


def check_token_list(root: Path, run) -> None:
    tokens = (root / "tokens.txt").read_text().split()
    words = {w for t in read_kaldi_table(root / "dump" / "raw" / "an4" / "text").values()
             for w in t.split()}
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-1] == "<sos/eos>"
    assert set(tokens[2:-1]) == words


def check_plan(root: Path, run) -> None:
    lines = [line.split("\t") for line in run.stdout.splitlines()]
    assert len(lines) == 2 and all(len(fields) == 5 for fields in lines)
    assert [fields[0] for fields in lines] == ["exp/asr_train_asr_ofa_p20", "exp/asr_train_asr_ofa_p80"]
    assert all("frame_period=" in fields[4] for fields in lines)


def check_resume_check(root: Path, run) -> None:
    killed = root / "exp" / "killed"
    assert sorted(p.name for p in killed.iterdir()) == ["3epoch.pth.damaged",
                                                         "checkpoint.pth.damaged"]
    assert "3epoch.pth is damaged" in run.stdout


def check_not_decoded(root: Path, run) -> None:
    assert "error" not in run.stderr  # exit 1 (checked above): not done, not a failure


def check_merge(root: Path, run) -> None:
    utts = read_kaldi_table(root / "data" / "an4" / "wav.scp")
    for period in (20, 80):
        merged = root / "exp" / "asr" / "decode" / f"p{period}" / "an4"
        info = json.loads((merged / "info.json").read_text())
        assert info["num_utts"] == len(utts) and info["frame_period"] == period
        assert info["achieved_period"] == pytest.approx(period, rel=0.05)
        lines = (merged / "text").read_text().splitlines()
        assert [line.split()[0] for line in lines] == sorted(utts)


def check_mark(root: Path, run) -> None:
    done = json.loads((root / "exp" / "asr" / "decode" / "decoded.json").read_text())
    assert done["frame_periods"] == [20.0, 80.0] and done["num_splits"] == 2


def check_decoded(root: Path, run) -> None:
    assert "error" not in run.stderr  # exit 0 (checked above): this decoding is done


def check_score_all(root: Path, run) -> None:
    for period in (20, 80):
        result = json.loads((root / "exp" / "asr" / "decode" / f"p{period}" / "an4" /
                             "result.json").read_text())
        assert (result["metric"], result["value"]) == ("WER", 0.0)  # hypotheses = references
    assert run.stdout.count("progress: ") == 2


CHECKS = {
    "recipe fsdd_data": check_fsdd_data,
    "recipe format (16 kHz)": check_format,
    "recipe filter": check_filter,
    "recipe token_list": check_token_list,
    "recipe plan": check_plan,
    "recipe resume_check": check_resume_check,
    "decode --done check (not done)": check_not_decoded,
    "decode --merge": check_merge,
    "decode --done mark": check_mark,
    "decode --done check (done)": check_decoded,
    "recipe score_all": check_score_all,
}


def test_every_light_step_is_checked():
    assert sorted(CHECKS) == sorted(LIGHT)


@pytest.mark.parametrize("name", LIGHT)
def test_light_step_works_without_torch_or_espnet(name, ran):
    root, runs = ran
    step, run = runs[name]
    assert run.returncode == step.returncode, run.stderr[-2000:]
    CHECKS[name](root, run)
    assert run.heavy == [], (
        f"{name} imported {run.heavy}; move the import into the function that needs "
        f"it. espnet_ofa modules it loaded: {run.ours}")
