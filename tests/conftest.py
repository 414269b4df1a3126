"""Fixtures shared by the test files: each expensive thing is built once per test run.

Reuse them in new test files (pytest finds them by name, no import needed):

``shared_data`` (session)
    ``../shared/data`` next to the repository (real speech: FSDD, an4_small). Missing, it
    skips the tests that use it, or fails them when ``CI=true``: in CI nothing may pass by
    being skipped. ``fsdd_recordings`` and ``an4_small`` are its two corpora.
``tiny_ofa_checkpoint`` (session)
    A tiny random-weight OFA student (``build_student("tiny")``, seed 0) written as
    ``ofa_ssl_train`` writes it: ``<dir>/valid.loss.best.pth`` with ``config.yaml`` beside.
    Shared by every test: read it, never write to it; ``tiny_ofa_copy`` (function scope) is
    a copy in the test's ``tmp_path`` (``exp/ofa/valid.loss.best.pth``) to change or break.
``fsdd_recipes`` (session, once per run even under pytest-xdist)
    Copies of ``egs2/fsdd/{ssl1,asr1,slu1,st1}`` under a temporary ``egs2/`` whose TEMPLATE
    links to the repository's, after ``asr1/run.sh`` stages 1-10 on a small FSDD subset
    (``FSDD_ASR_OPTS``): stage 10 finds no OFA model and runs ``../ssl1/run.sh`` (tiny
    HuBERT teacher, pseudo boundaries, OFA pretraining and a fixed-rate student at 80 ms,
    pack). A `RecipeRun`; the OFA model is ``fsdd_ofa_model``. Only
    ``test_recipe_integration.py`` (asr1 stages 11-13) and ``test_recipe_fsdd_slu_st.py``
    (slu1, st1) run further stages in it; others read its models.
``fsdd_ofa_model`` (session)
    ``ssl1/exp/ssl_train_ofa_tiny/valid.loss.best.pth`` of ``fsdd_recipes``: a trained
    tiny OFA model, for a recipe's ``--ofa_model``.

Helpers for recipe tests (``from conftest import ...``): ``copy_recipes`` (recipe copies
under a temporary ``egs2/``), ``recipe_env`` (this interpreter's tools on PATH with its
``python3`` through the warm Python of tests/warm_python.py, corpus variables: run commands
as ``python3 ...`` in it, ``sys.executable`` only where a fresh interpreter is the point),
``run_recipe`` / ``start_recipe`` + ``finish_recipe`` (``./run.sh``, killed with its process
group past a limit), ``once_per_run`` (a build shared by the xdist workers).

Scheduling: the slow files (``SLOW_FILES``, marked ``slow``) are collected first, so that
``tools/test.sh`` (``-n 2 --dist loadfile --no-loadscope-reorder``) starts them at once on
the two workers; ``-m "not slow"`` leaves them out for a quick run (CI runs everything).
Tests marked ``stage_kill_sweep`` (the kill-every-stage sweep of test_stage_kill.py) are
deselected, not skipped, unless ESPNET_OFA_RUN_STAGE_KILL=1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
from filelock import FileLock

import corpus_layouts
import warm_python

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = corpus_layouts.SHARED_DATA

# The order in which the two workers take them (tools/test.sh). pytest-xdist's loadfile hands
# a worker a second file at once when its first has at most two tests left: the first file
# (which builds ``fsdd_recipes``, then trains on it) gets the third as its follower, the
# scale smokes, whose LibriSpeech half needs that fixture; the speechocean762 smoke and the
# rest go to the other worker, where test_recipe_fsdd_slu_st.py comes late enough to find
# the fixture built.
SLOW_FILES = ("test_recipe_integration.py", "test_speechocean762.py", "test_recipe_scale.py",
              "test_frontend_espnet.py", "test_recipe_fsdd_slu_st.py", "test_espnet3.py",
              "test_stage_kill.py")

# The small FSDD subset of the end-to-end runs: 3 takes per speaker and digit to train on.
# One job per data/statistics stage (--nj 1): on a few hundred utterances a second job
# costs a Python start-up (ESPnet's import alone is seconds) and saves nothing. Splitting
# into jobs and merging their statistics run in the LibriSpeech smoke (test_recipe_scale.py).
FSDD_DATA_OPTS = "--train_takes 3 --dev_takes 1 --test_takes 1 --heldout_takes 1"
# No ESPnet loss plots (--use_matplotlib false): drawing them costs each training ~2 s, and
# the plot of the learnt period is checked in test_frontend_espnet.py.
FSDD_TRAIN_ARGS = "--max_epoch 1 --use_matplotlib false"
FSDD_SSL_OPTS = (f"--local_data_opts '{FSDD_DATA_OPTS}' --n_units 20 --nj 1 "
                 f"--teacher_args '{FSDD_TRAIN_ARGS}' --ssl_args '{FSDD_TRAIN_ARGS}'")
FSDD_ASR_OPTS = (f'--local_data_opts "{FSDD_DATA_OPTS}" --ssl_recipe_opts "{FSDD_SSL_OPTS}" --nj 1 '
                 f'--asr_args "{FSDD_TRAIN_ARGS}" --frame_periods "20 80" '
                 '--train_frame_periods "20 80" --fixed_rate_periods 80 --single_rate_periods 80 '
                 '--pooled_periods 80 --teacher_pooled_periods 80')
# Where a recipe's stages 1-10 and 11-13 meet (stage 10 runs ../ssl1 when its model is missing).
FSDD_FIRST_STOP_STAGE = 10


def pytest_collection_modifyitems(config, items) -> None:
    if os.environ.get("ESPNET_OFA_RUN_STAGE_KILL", "") in ("", "0"):  # opt-in: deselected
        sweep = [item for item in items if item.get_closest_marker("stage_kill_sweep")]
        if sweep:
            config.hook.pytest_deselected(items=sweep)
            items[:] = [item for item in items if item not in sweep]
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    for item in items:
        if item.path.name in rank:
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole


def require_shared(path: Path, what: str) -> Path:
    """``path`` if it exists; else a skip, or under ``CI=true`` a failure, naming it."""
    if not path.exists():
        message = (f"{what} not found at {path}: the tests need ../shared/data next to the "
                   "repository (see its README.md)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; under CI=true that is an error, not a skip", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    require_shared(corpus_layouts.FSDD, "FSDD recordings")
    require_shared(corpus_layouts.AN4 / "train.jsonl", "an4_small")
    return SHARED_DATA


@pytest.fixture(scope="session")
def fsdd_recordings(shared_data) -> Path:
    """The FSDD wav files (8 kHz, ``<digit>_<speaker>_<take>.wav``)."""
    return corpus_layouts.FSDD


@pytest.fixture(scope="session")
def an4_small(shared_data) -> Path:
    """40 AN4 utterances at 16 kHz: ``train.jsonl``/``test.jsonl`` (audio, text)."""
    return corpus_layouts.AN4


@pytest.fixture(scope="session")
def tiny_ofa_checkpoint(tmp_path_factory) -> Path:
    from espnet_ofa.models.pretrained import save_student
    from espnet_ofa.models.student import build_student

    with torch.random.fork_rng():
        torch.manual_seed(0)
        student = build_student("tiny")
    return save_student(student, tmp_path_factory.mktemp("tiny_ofa"), preset="tiny")


@pytest.fixture
def no_rate_override(monkeypatch):
    """No decoding-period override from the environment (ESPNET_OFA_FRAME_PERIOD/_LAM)."""
    monkeypatch.delenv("ESPNET_OFA_FRAME_PERIOD", raising=False)
    monkeypatch.delenv("ESPNET_OFA_LAM", raising=False)


@pytest.fixture
def tiny_ofa_copy(tmp_path, tiny_ofa_checkpoint) -> Path:
    exp = shutil.copytree(tiny_ofa_checkpoint.parent, tmp_path / "exp" / "ofa")
    return exp / tiny_ofa_checkpoint.name


def once_per_run(tmp_path_factory, worker_id: str, name: str,
                 build: Callable[[Path], dict]) -> dict:
    """``build(directory)`` once per test run, whichever xdist worker asks first; the others
    wait for it and get the same JSON-able result. ``directory`` is shared by all workers."""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent  # the run's directory, above each worker's own
    directory = root / name
    done = root / f"{name}.json"
    with FileLock(str(root / f"{name}.lock")):
        if not done.is_file():
            directory.mkdir(exist_ok=True)
            try:
                result = {"ok": build(directory)}
            except Exception as err:  # every worker fails alike rather than building again
                result = {"error": f"{type(err).__name__}: {err}"}
            done.write_text(json.dumps(result))
    result = json.loads(done.read_text())
    if "error" in result:
        pytest.fail(f"building {name} failed: {result['error']}", pytrace=False)
    return result["ok"]


def start_recipe(recipe: Path, args: str, env: dict) -> subprocess.Popen:
    """``./run.sh args`` in ``recipe`` in the background (stderr into stdout), in its own
    process group so that `finish_recipe` can stop all of it."""
    return subprocess.Popen(["bash", "-c", f"./run.sh {args}"], cwd=recipe, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def finish_recipe(proc: subprocess.Popen, timeout: int = 3600) -> str:
    """Wait for a `start_recipe` run; its output. Past ``timeout`` (a hang) its whole process
    group is killed and the test fails."""
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out = proc.communicate()[0]
        pytest.fail(f"{proc.args[-1]}: killed after {timeout} s:\n{out[-3000:]}", pytrace=False)


def run_recipe(recipe: Path, args: str, env: dict,
               timeout: int = 3600) -> subprocess.CompletedProcess:
    """``./run.sh args`` in ``recipe``; past ``timeout`` (a hang) its whole process group is
    killed, returncode -9, with what it printed so far."""
    proc = subprocess.Popen(["bash", "-c", f"./run.sh {args}"], cwd=recipe, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\nrun.sh {args}: killed after {timeout} s"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


_warm_python: dict | None = None


def warm_python_env() -> dict:
    """The variables that send a recipe's ``python3`` commands to this process's warm
    Python (tests/warm_python.py, started on first use); none when it is switched off."""
    global _warm_python
    if os.environ.get(warm_python.SWITCH_ENV, "") == "0":
        return {}
    if _warm_python is None:
        import atexit
        import tempfile

        directory = tempfile.mkdtemp(prefix="warm-python-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)  # its server goes too
        _warm_python = warm_python.start(directory)
    return dict(_warm_python)


def recipe_env(**paths: Path) -> dict:
    """The environment of a recipe run: this interpreter's tools first (its ``python3``
    through the warm Python), corpus variables."""
    warm = warm_python_env()
    path = ":".join(p for p in (warm.pop("PATH", None), str(Path(sys.executable).parent),
                                os.environ["PATH"]) if p)
    return {**os.environ, **warm, "PATH": path, **{k: str(v) for k, v in paths.items()}}


def copy_recipes(egs2: Path, names) -> None:
    """Copy ``egs2/<name>`` (e.g. ``fsdd/asr1``) without outputs; TEMPLATE is a link."""
    if not (egs2 / "TEMPLATE").exists():
        egs2.mkdir(parents=True, exist_ok=True)
        (egs2 / "TEMPLATE").symlink_to(REPO / "egs2" / "TEMPLATE")
    skip = shutil.ignore_patterns("data", "dump", "exp", "downloads", "RESULTS.*")
    for name in names:
        shutil.copytree(REPO / "egs2" / name, egs2 / name, symlinks=True, ignore=skip)


@dataclass
class RecipeRun:
    """A finished ``run.sh``: where its recipes are, and what it printed."""

    recipes: Path  # egs2/<corpus>
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> "RecipeRun":
        assert self.returncode == 0, (self.stdout[-3000:], self.stderr[-5000:])
        return self


@pytest.fixture(scope="session")
def fsdd_recipes(tmp_path_factory, worker_id, fsdd_recordings) -> RecipeRun:
    def build(directory: Path) -> dict:
        egs = directory / "egs2"
        copy_recipes(egs, [f"fsdd/{name}" for name in ("ssl1", "asr1", "slu1", "st1")])
        r = run_recipe(egs / "fsdd" / "asr1",
                       f"--stop_stage {FSDD_FIRST_STOP_STAGE} {FSDD_ASR_OPTS}",
                       recipe_env(FSDD=fsdd_recordings.parent))
        return {"recipes": str(egs / "fsdd"), "returncode": r.returncode, "stdout": r.stdout,
                "stderr": r.stderr}

    run = once_per_run(tmp_path_factory, worker_id, "fsdd_recipes", build)
    return RecipeRun(Path(run["recipes"]), run["returncode"], run["stdout"], run["stderr"])


@pytest.fixture(scope="session")
def fsdd_ofa_model(fsdd_recipes) -> Path:
    model = fsdd_recipes.check().recipes / "ssl1/exp/ssl_train_ofa_tiny/valid.loss.best.pth"
    assert model.is_file(), f"the FSDD ssl1 run left no {model}"
    return model
