"""The suite's guard against passing by skipping: missing shared data under CI."""

import pytest

from conftest import require_shared


def test_missing_shared_data_fails_under_ci_and_skips_elsewhere(tmp_path, monkeypatch):
    missing = tmp_path / "shared" / "data" / "fsdd"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"FSDD not found at .*under CI=true"):
        require_shared(missing, "FSDD")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=r"FSDD not found at .*\.\./shared/data"):
        require_shared(missing, "FSDD")
    assert require_shared(tmp_path, "FSDD") == tmp_path
