"""INTEGRATION (slow): the scale recipes' ``--smoke true`` paths on small corpora in the exact
layouts of LibriSpeech, SLURP and CoVoST 2 / Common Voice (tests/corpus_layouts.py).

- ``egs2/slurp/slu1`` and ``egs2/covost2/st1`` stages 1-13 side by side, on a tiny OFA model
  given with ``--ofa_model`` (the recipes' own default is ../../fsdd/ssl1's), one job per
  data stage: the SLU and ST recipes end to end (training with a learnt rate, decoding,
  scoring, RESULTS.md);
- ``egs2/librispeech/ssl1/run.sh --smoke true`` with the FSDD recipe's tiny HuBERT as its
  teacher (``--teacher``; the teacher's own training runs once, in the FSDD fixture):
  pseudo boundaries from its units, OFA pretraining initialised from it, pack; then
  ``egs2/librispeech_100/asr1/run.sh --stage 1 --stop_stage 13 --smoke true`` on the FSDD
  OFA model (``--ofa_model``, conftest.py's ``fsdd_ofa_model``), with the recipes' two
  jobs per data stage (the suite's one run of split segmentation and merged statistics).

The recipes run in copies of their directories under a temporary ``egs2/`` whose TEMPLATE
links to the repository's. ESPNET_OFA_SKIP_RECIPE_E2E=1 skips this module.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import corpus_layouts
from conftest import copy_recipes, finish_recipe, recipe_env, start_recipe
from espnet_ofa.recipe.results import SMOKE_BANNER

RECIPES = ("librispeech/ssl1", "librispeech_100/asr1", "slurp/slu1", "covost2/st1")

pytestmark = [
    pytest.mark.skipif(os.environ.get("ESPNET_OFA_SKIP_RECIPE_E2E", "") not in ("", "0"),
                       reason="ESPNET_OFA_SKIP_RECIPE_E2E is set"),
    pytest.mark.usefixtures("shared_data"),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, shared_data) -> Path:
    root = tmp_path_factory.mktemp("scale")
    copy_recipes(root / "egs2", RECIPES)
    corpus_layouts.build_librispeech(root / "libri")
    corpus_layouts.build_slurp(root / "slurp")
    corpus_layouts.build_covost2(root / "cv", root / "covost")
    return root


def _env(root: Path) -> dict:
    return recipe_env(LIBRISPEECH=root / "libri", SLURP=root / "slurp", COMMONVOICE=root / "cv",
                      COVOST2=root / "covost")


def _start(root: Path, recipe: str, args: str) -> subprocess.Popen:
    return start_recipe(root / "egs2" / recipe, args, _env(root))


def _finish(proc: subprocess.Popen, what: str) -> str:
    out = finish_recipe(proc)
    assert proc.returncode == 0, f"{what} failed:\n{out[-4000:]}"
    return out


def _rows(results_md: Path):
    """(dataset, period cell) of every table row of RESULTS.md."""
    rows = []
    for line in results_md.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and cells[0] not in ("dataset", "---", ""):
            rows.append((cells[0], cells[1]))
    return rows


def test_slurp_and_covost2_smoke(workdir, tiny_ofa_checkpoint):
    # One job per data/statistics stage and one process for the experiments' statistics,
    # trainings and decodings: each is a Python start-up (ESPnet's import alone is seconds).
    # The LibriSpeech smoke below runs the recipes' two data jobs; the FSDD fixture two
    # processes of experiments.
    args = (f"--stage 1 --stop_stage 13 --smoke true --ofa_model {tiny_ofa_checkpoint} --nj 1 "
            "--max_parallel_exps 1")
    procs = {name: _start(workdir, name, args) for name in ("slurp/slu1", "covost2/st1")}
    for name, proc in procs.items():
        _finish(proc, name)
    slu = workdir / "egs2" / "slurp" / "slu1"
    # Headset and far-field recordings of every prompt; "<intent> <words>" texts.
    assert len((slu / "data" / "train" / "text").read_text().splitlines()) == 60
    assert {"20", "40", "90"} <= {p for d, p in _rows(slu / "RESULTS.md") if d == "test"}
    slu_text = (slu / "RESULTS.md").read_text()
    assert "Acc (%)" in slu_text and SMOKE_BANNER in slu_text
    st = workdir / "egs2" / "covost2" / "st1"
    assert (st / "data" / "test" / "src_text").is_file()
    assert {"20", "40", "90"} <= {p for d, p in _rows(st / "RESULTS.md") if d == "test"}
    st_text = (st / "RESULTS.md").read_text()
    assert "BLEU" in st_text and "chrF" in st_text and SMOKE_BANNER in st_text


def test_librispeech_smoke(workdir, fsdd_recipes, fsdd_ofa_model):
    teacher = fsdd_recipes.recipes / "ssl1" / "exp" / "hubert_train_hubert_tiny"
    # Its last layer for the units, as ssl.sh picks for a teacher it trains itself.
    out = _finish(_start(workdir, "librispeech/ssl1",
                         f"--smoke true --teacher {teacher} --segment_layer 2"),
                  "librispeech/ssl1")
    exp = workdir / "egs2" / "librispeech" / "ssl1" / "exp" / "ssl_train_ofa_tiny"
    assert (exp / "valid.loss.best.pth").exists() and (exp / "packed.zip").is_file()
    # The real layout was read: 24 train-clean-100 utterances, upper-case transcripts.
    data = workdir / "egs2" / "librispeech" / "ssl1" / "data"
    assert len((data / "train" / "wav.scp").read_text().splitlines()) == 24
    assert "Stage 7: skipped: teacher given" in out and "Stage 10" in out
    assert "init_cnn_from_teacher: true" in (exp / "config.yaml").read_text()

    asr = workdir / "egs2" / "librispeech_100" / "asr1"
    _finish(_start(workdir, "librispeech_100/asr1",
                   f"--stage 1 --stop_stage 13 --smoke true --ofa_model {fsdd_ofa_model} "
                   "--max_parallel_exps 1"),
            "librispeech_100/asr1")
    text = (asr / "data" / "test_clean" / "text").read_text().splitlines()
    assert text and all(line.split(None, 1)[1].isupper() for line in text)
    rows = _rows(asr / "RESULTS.md")
    periods = {p for d, p in rows if d == "test_clean"}
    assert {"20", "40", "90"} <= periods and any(p.startswith("learned") for p in periods)
    assert SMOKE_BANNER in (asr / "RESULTS.md").read_text()
    assert (asr / "RESULTS.png").is_file()
