"""INTEGRATION (slow): the scale recipes' ``--smoke true`` paths on small corpora in the exact
layouts of LibriSpeech, SLURP and CoVoST 2 / Common Voice (tests/corpus_layouts.py).

- ``egs2/librispeech/ssl1/run.sh --smoke true`` (tiny HuBERT teacher trained here, pseudo
  boundaries from its units, OFA pretraining, pack), then
  ``egs2/librispeech_100/asr1/run.sh --stage 1 --stop_stage 13 --smoke true`` on its model;
- ``egs2/slurp/slu1`` and ``egs2/covost2/st1`` stages 1-13 side by side, on a tiny OFA model
  given with ``--ofa_model`` (the recipes' own default is ../../fsdd/ssl1's).

The recipes run in copies of their directories under a temporary ``egs2/`` whose TEMPLATE
links to the repository's. ESPNET_OFA_SKIP_RECIPE_E2E=1 skips this module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import corpus_layouts

REPO = Path(__file__).resolve().parents[1]
RECIPES = ("librispeech/ssl1", "librispeech_100/asr1", "slurp/slu1", "covost2/st1")

pytestmark = [
    pytest.mark.skipif(os.environ.get("ESPNET_OFA_SKIP_RECIPE_E2E", "") not in ("", "0"),
                       reason="ESPNET_OFA_SKIP_RECIPE_E2E is set"),
    pytest.mark.skipif(not corpus_layouts.available(),
                       reason="../shared/data (AN4, FSDD) not found next to the repo"),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scale")
    (root / "egs2").mkdir()
    (root / "egs2" / "TEMPLATE").symlink_to(REPO / "egs2" / "TEMPLATE")
    skip = shutil.ignore_patterns("data", "dump", "exp", "downloads", "RESULTS.*")
    for name in RECIPES:
        shutil.copytree(REPO / "egs2" / name, root / "egs2" / name, symlinks=True, ignore=skip)
    corpus_layouts.build_librispeech(root / "libri")
    corpus_layouts.build_slurp(root / "slurp")
    corpus_layouts.build_covost2(root / "cv", root / "covost")
    return root


def _env(root: Path) -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "LIBRISPEECH": str(root / "libri"), "SLURP": str(root / "slurp"),
            "COMMONVOICE": str(root / "cv"), "COVOST2": str(root / "covost")}


def _start(root: Path, recipe: str, args: str) -> subprocess.Popen:
    return subprocess.Popen(["bash", "-c", f"./run.sh {args}"], cwd=root / "egs2" / recipe,
                            env=_env(root), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen, what: str, timeout: int = 900) -> str:
    out, _ = proc.communicate(timeout=timeout)
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


def test_librispeech_smoke(workdir):
    out = _finish(_start(workdir, "librispeech/ssl1", "--smoke true"), "librispeech/ssl1")
    exp = workdir / "egs2" / "librispeech" / "ssl1" / "exp" / "ssl_train_ofa_tiny"
    assert (exp / "valid.loss.best.pth").exists() and (exp / "packed.zip").is_file()
    # The real layout was read: 24 train-clean-100 utterances, upper-case transcripts.
    data = workdir / "egs2" / "librispeech" / "ssl1" / "data"
    assert len((data / "train" / "wav.scp").read_text().splitlines()) == 24
    assert "Stage 7" in out  # the tiny teacher was trained (no HuBERT Base offline)

    asr = workdir / "egs2" / "librispeech_100" / "asr1"
    _finish(_start(workdir, "librispeech_100/asr1", "--stage 1 --stop_stage 13 --smoke true"),
            "librispeech_100/asr1")
    text = (asr / "data" / "test_clean" / "text").read_text().splitlines()
    assert text and all(line.split(None, 1)[1].isupper() for line in text)
    rows = _rows(asr / "RESULTS.md")
    periods = {p for d, p in rows if d == "test_clean"}
    assert {"20", "40", "90"} <= periods and any(p.startswith("learned") for p in periods)
    assert (asr / "RESULTS.png").is_file()


def test_slurp_and_covost2_smoke(workdir, tmp_path):
    from espnet_ofa.models.pretrained import save_student
    from espnet_ofa.models.student import build_student

    ofa = save_student(build_student("tiny"), tmp_path / "ofa", preset="tiny")
    args = f"--stage 1 --stop_stage 13 --smoke true --ofa_model {ofa}"
    procs = {name: _start(workdir, name, args) for name in ("slurp/slu1", "covost2/st1")}
    for name, proc in procs.items():
        _finish(proc, name)
    slu = workdir / "egs2" / "slurp" / "slu1"
    # Headset and far-field recordings of every prompt; "<intent> <words>" texts.
    assert len((slu / "data" / "train" / "text").read_text().splitlines()) == 60
    assert {"20", "40", "90"} <= {p for d, p in _rows(slu / "RESULTS.md") if d == "test"}
    st = workdir / "egs2" / "covost2" / "st1"
    assert (st / "data" / "test" / "src_text").is_file()
    assert {"20", "40", "90"} <= {p for d, p in _rows(st / "RESULTS.md") if d == "test"}
    assert "chrF" in (st / "RESULTS.md").read_text()
