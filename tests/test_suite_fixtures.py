"""The suite's own guards (tests/conftest.py): missing shared data under CI, hung recipes,
the opt-in stage-kill sweep."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def test_the_stage_kill_sweep_is_deselected_not_skipped_unless_asked():
    """CI's run shows no skips: the sweep is left out at collection, and selected by
    ESPNET_OFA_RUN_STAGE_KILL=1."""
    def collect(run_sweep: str) -> str:
        env = {**os.environ, "ESPNET_OFA_RUN_STAGE_KILL": run_sweep}
        out = subprocess.run([sys.executable, "-m", "pytest", "tests/test_stage_kill.py",
                              "--collect-only", "-q", "-p", "no:cacheprovider"],
                             cwd=Path(__file__).resolve().parents[1], env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        return out.stdout

    default = collect("")
    assert "test_every_stage_survives_a_kill_and_rerun" not in default
    assert "2/4 tests collected (2 deselected)" in default and "skip" not in default
    assert "test_data_units_and_training_stages_survive_a_kill" in default
    assert "4 tests collected" in collect("1")
