"""The suite's own guards (tests/conftest.py): missing shared data under CI, hung recipes,
the opt-in stage-kill sweep."""

import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import finish_recipe, recipe_env, require_shared, run_recipe, start_recipe


def test_missing_shared_data_fails_under_ci_and_skips_elsewhere(tmp_path, monkeypatch):
    missing = tmp_path / "shared" / "data" / "fsdd"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"FSDD not found at .*under CI=true"):
        require_shared(missing, "FSDD")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=r"FSDD not found at .*\.\./shared/data"):
        require_shared(missing, "FSDD")
    assert require_shared(tmp_path, "FSDD") == tmp_path


def test_a_hung_recipe_is_killed_with_its_children(tmp_path):
    (tmp_path / "run.sh").write_text("#!/usr/bin/env bash\necho started\n"
                                     "sleep 300 & echo $! > child.pid\nwait\n")
    (tmp_path / "run.sh").chmod(0o755)
    r = run_recipe(tmp_path, "--stage 1", recipe_env(), timeout=2)
    assert r.returncode == -signal.SIGKILL and r.stdout == "started\n"
    assert "run.sh --stage 1: killed after 2 s" in r.stderr
    child = int((tmp_path / "child.pid").read_text())
    for _ in range(100):  # the background job went with it (once init reaps it)
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"the recipe's background job {child} outlived it")


def test_a_hung_background_recipe_fails_the_test_and_is_killed(tmp_path):
    (tmp_path / "run.sh").write_text("#!/usr/bin/env bash\necho started\nsleep 300\n")
    (tmp_path / "run.sh").chmod(0o755)
    proc = start_recipe(tmp_path, "--stage 1", recipe_env())
    with pytest.raises(pytest.fail.Exception, match=r"killed after 2 s:\nstarted"):
        finish_recipe(proc, timeout=2)
    assert proc.returncode == -signal.SIGKILL


class _Item:
    """What pytest_collection_modifyitems reads of a collected test."""

    def __init__(self, file: str, sweep: bool) -> None:
        self.path, self.sweep = Path("tests") / file, sweep

    def get_closest_marker(self, name: str):
        return name if name == "stage_kill_sweep" and self.sweep else None

    def add_marker(self, marker) -> None:
        pass


def test_the_stage_kill_sweep_is_deselected_not_skipped_unless_asked(monkeypatch):
    """CI's run shows no skips: the sweep is left out at collection (reported as
    deselected), and kept with ESPNET_OFA_RUN_STAGE_KILL=1."""
    import conftest
    import test_stage_kill

    marks = [m.name for m in test_stage_kill.test_every_stage_survives_a_kill_and_rerun.pytestmark]
    assert "stage_kill_sweep" in marks

    def collect(run_sweep: str):
        monkeypatch.setenv("ESPNET_OFA_RUN_STAGE_KILL", run_sweep)
        items = [_Item("test_stage_kill.py", sweep=True), _Item("test_stage_kill.py", False),
                 _Item("test_zoo.py", False)]
        deselected = []
        config = SimpleNamespace(hook=SimpleNamespace(
            pytest_deselected=lambda items: deselected.extend(items)))
        conftest.pytest_collection_modifyitems(config, items)
        return [item.sweep for item in items], [item.sweep for item in deselected]

    assert collect("") == ([False, False], [True])
    assert collect("0") == ([False, False], [True])
    assert collect("1") == ([True, False, False], [])
