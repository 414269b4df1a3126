"""Every case of the reliability sweep (``tools/reliability_sweep.py``) as a test.

A case passes when the bad or unusual input gives what the case states: a clear error
(the expected exception type, raised by our own check, with a message naming the problem
and the fix) or a correct result. An unclear error, a crash or a silent wrong answer fails
with the sweep's classification and the message the user would have seen.
"""

from __future__ import annotations

import importlib.util
import string
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    with pytest.raises(sweep.CommandFailed, match=r"exit 2: .*required: --zoo"):
        sweep.run_command("espnet_ofa.bin.publish", "a.zip")  # --zoo missing


# ----------------------------------------------------------------------------- the rules behind
# the cases the sweep found (each case above is the regression test of its own input)

INVISIBLE = st.sampled_from(["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"])


@settings(max_examples=25, deadline=None)
@given(head=st.text(string.ascii_letters, min_size=1, max_size=5), char=INVISIBLE,
       tail=st.text(string.ascii_letters, min_size=0, max_size=5))
def test_ids_never_hold_an_invisible_format_character(tmp_path_factory, head, char, tail):
    """Two ids that print alike must be equal: a zero-width or format character inside an
    id is refused by the validation and its line dropped (reported) by the repair."""
    from espnet_ofa.data import DataDirError, fix_data_dir, validate_data_dir
    from espnet_ofa.data.datadir import read_table_lines

    root = tmp_path_factory.mktemp("dd")
    (root / "wav.scp").write_text(f"{head}{char}{tail} a.wav\nzz b.wav\n", encoding="utf-8")
    with pytest.raises(DataDirError, match=rf"wav.scp:1: id .* contains U\+{ord(char):04X}"):
        validate_data_dir(root, check_audio_paths=False)
    report = fix_data_dir(root, backup=False)
    assert [x.key for x in read_table_lines(root / "wav.scp")] == ["zz"]
    assert any(f"U+{ord(char):04X}" in line for line in report.dropped_lines)


@pytest.mark.parametrize("name", ["wav.scp", "text", "utt2spk"])
def test_a_byte_order_mark_is_refused_and_removed_by_the_repair(tmp_path, name):
    from espnet_ofa.data import DataDirError, fix_data_dir, read_kaldi_table, validate_data_dir

    tables = {"wav.scp": "a a.wav\nb b.wav\n", "text": "a x\nb y\n", "utt2spk": "a s\nb s\n"}
    for table, text in tables.items():
        (tmp_path / table).write_text(("\ufeff" if table == name else "") + text,
                                      encoding="utf-8")
    with pytest.raises(DataDirError, match=rf"{name}:1: id .* starts with U\+FEFF \(a "
                                           r"byte-order mark\).*without a BOM"):
        validate_data_dir(tmp_path, check_audio_paths=False)
    report = fix_data_dir(tmp_path, backup=False)
    assert report.num_kept == 2 and not report.dropped
    assert read_kaldi_table(tmp_path / name) == {k: v for k, v in (
        line.split(" ", 1) for line in tables[name].splitlines())}
    assert not (tmp_path / name).read_bytes().startswith(b"\xef\xbb\xbf")
    validate_data_dir(tmp_path, check_audio_paths=False)
