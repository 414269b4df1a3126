"""Every case of the reliability sweep (``tools/reliability_sweep.py``) as a test.

A case passes when the bad or unusual input gives what the case states: a clear error
(the expected exception type, raised by our own check, with a message naming the problem
and the fix) or a correct result. An unclear error, a crash or a silent wrong answer fails
with the sweep's classification and the message the user would have seen.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "tools" / "reliability_sweep.py"
_spec = importlib.util.spec_from_file_location("reliability_sweep", _PATH)
sweep = importlib.util.module_from_spec(_spec)
sys.modules["reliability_sweep"] = sweep
_spec.loader.exec_module(sweep)


@pytest.fixture(scope="module")
def workspace():
    with sweep.workspace() as ws:
        yield ws


@pytest.mark.parametrize("case", sweep.CASES, ids=sweep.case_id)
def test_case_is_a_clear_error_or_a_correct_result(case, workspace):
    result = sweep.run_case(case, workspace)
    if result.outcome == "skipped":
        pytest.skip(result.message)
    assert result.outcome in ("clear", "correct"), f"{result.outcome}: {result.message}"


def test_the_sweep_covers_at_least_96_cases_and_every_entry_point():
    assert len(sweep.CASES) >= 96
    assert len({sweep.case_id(c) for c in sweep.CASES}) == len(sweep.CASES)  # ids unique
    entries = {c.entry for c in sweep.CASES}
    for entry in ("rate_alpha", "cif", "load_student", "OFAFrontend", "validate_data_dir",
                  "fix_data_dir", "speechocean762 prepare", "zoo", "s3prl ofa_local",
                  "Hugging Face export", "espnet3", "python -m espnet_ofa.bin"):
        assert entry in entries, entry


def test_the_runner_tells_the_outcomes_apart(workspace):
    """The classification itself: a wrong value is silent, a missing error is silent, a
    raw IndexError is a crash, an error from inside torch is unclear."""
    import torch

    def outcome(**kw):
        return sweep.run_case(sweep.Case("t", "t", **kw), workspace).outcome

    assert outcome(run=lambda ws: 1, check=lambda v: v == 1) == "correct"
    assert outcome(run=lambda ws: 2, check=lambda v: v == 1) == "silent"
    assert outcome(run=lambda ws: 2, error=ValueError, match="x") == "silent"
    assert outcome(run=lambda ws: [][1], error=ValueError, match="x") == "crash"
    assert outcome(run=lambda ws: torch.zeros(2) @ torch.zeros(3), error=RuntimeError,
                   match="") == "unclear"  # raised inside torch, not by a check
    with pytest.raises(sweep.CommandFailed, match=r"exit 2: .*invalid choice"):
        sweep.run_command("espnet_ofa.bin.publish", "a.zip")  # --zoo missing
