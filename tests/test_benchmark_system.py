"""``python -m espnet_ofa.bin.benchmark_system``: the JSON a user gets for a packed model.

The model is a fixture-sized ASR model (tiny random-weight OFA student, one-block
Transformer encoder/decoder, untrained) packed as stage 14 packs one; what is checked is
the report's structure and that its numbers are positive, finite and add up, not timings.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from tiny_models import TINY_ASR_CONF


@pytest.fixture(scope="module")
def packed(tmp_path_factory, tiny_ofa_checkpoint) -> Path:
    import os

    from espnet2.tasks.asr import ASRTask

    from espnet_ofa.zoo.downstream import pack_downstream

    root = tmp_path_factory.mktemp("system")
    shutil.copytree(tiny_ofa_checkpoint.parent, root / "exp" / "ofa")
    torch.manual_seed(0)
    (root / "tokens.txt").write_text("\n".join(
        ["<blank>", "<unk>", *"abcdefghijklmnopqrstuvwxyz", "<space>", "<sos/eos>"]) + "\n")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        args = ASRTask.get_parser().parse_args(
            ["--config", str(TINY_ASR_CONF), "--token_list", "tokens.txt", "--token_type", "char",
             "--frontend_conf", "model=exp/ofa/valid.loss.best.pth", "--output_dir", "exp/asr"])
        model = ASRTask.build_model(args)
        exp = root / "exp" / "asr"
        exp.mkdir(parents=True)
        conf = dict(vars(args))
        conf["token_list"] = [t for t in (root / "tokens.txt").read_text().split()]
        (exp / "config.yaml").write_text(yaml.safe_dump(conf, sort_keys=False))
        torch.save(model.state_dict(), exp / "valid.loss.best.pth")
        return pack_downstream("asr", exp / "config.yaml", exp / "valid.loss.best.pth",
                               root / "packed.zip").resolve()
    finally:
        os.chdir(cwd)


def test_report_per_period_and_batch_with_a_breakdown_that_adds_up(packed, an4_small, tmp_path):
    from espnet_ofa.bin.benchmark_system import main

    wavs = [str(an4_small / json.loads(line)["audio"])
            for line in (an4_small / "test.jsonl").read_text().splitlines()[:3]]
    out = tmp_path / "system.json"
    main(["--model", str(packed), "--periods", "40", "80", "--wavs", *wavs,
          "--batch_sizes", "1", "2", "--beam_size", "2", "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["task"] == "asr" and report["device"] == "cpu"
    rows = report["rows"]
    assert [(r["frame_period"], r["batch_size"]) for r in rows] == [
        (40.0, 1), (40.0, 2), (80.0, 1), (80.0, 2)]
    for r in rows:
        assert r["num_utts"] == 3 and r["audio_seconds"] > 0
        parts = r["rtf_parts"]
        assert set(parts) == {"frontend", "encoder", "decoding"}
        for value in (r["rtf"], *parts.values(), r["peak_rss_mib"]):
            assert math.isfinite(value) and value >= 0
        assert r["rtf"] > 0 and parts["frontend"] > 0 and parts["encoder"] > 0
        # The parts are shares of the same decodings: they add up to the total.
        assert sum(parts.values()) == pytest.approx(r["rtf"], rel=1e-6)
        assert r["seconds"]["total"] == pytest.approx(r["rtf"] * r["audio_seconds"])


def test_errors_name_the_problem(packed, an4_small, tmp_path):
    from espnet_ofa.bin.benchmark_system import main

    wav = str(an4_small / json.loads((an4_small / "test.jsonl").read_text().splitlines()[0])["audio"])
    with pytest.raises(SystemExit) as err:
        main(["--model", str(packed), "--periods", "500", "--wavs", wav])
    assert err.value.code == 2
    with pytest.raises(SystemExit):
        main(["--model", str(tmp_path / "missing.zip"), "--wavs", wav])
