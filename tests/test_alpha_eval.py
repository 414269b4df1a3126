"""Alpha losses of a student against boundary files (espnet_ofa.bin.alpha_eval)."""

import numpy as np
import pytest
import soundfile
import torch

from espnet_ofa.bin.alpha_eval import main
from espnet_ofa.data import DataDirError, write_kaldi_table
from espnet_ofa.models.distill_loss import alpha_losses
from espnet_ofa.models.pretrained import load_student
from espnet_ofa.models.student import build_student
from espnet_ofa.segmentation.evaluate import alpha_fit

NUM_SAMPLES = {"a": 16000, "b": 9600, "c": 24000}


def frames(n: int) -> int:
    return (n - 400) // 320 + 1


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_ofa_checkpoint):
    root = tmp_path_factory.mktemp("alpha_eval")
    rng = np.random.default_rng(0)
    scp = {}
    for utt, n in NUM_SAMPLES.items():
        path = root / f"{utt}.wav"
        soundfile.write(path, (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
        scp[utt] = str(path)
    data = root / "data"
    data.mkdir()
    write_kaldi_table(data / "wav.scp", scp)
    # Two boundary sets: every 4 frames, and every 7 (the last end is T in both).
    bounds = {}
    for step in (4, 7):
        table = {}
        for utt, n in NUM_SAMPLES.items():
            t = frames(n)
            table[utt] = " ".join(str(e) for e in [*range(step, t, step), t])
        bounds[step] = root / f"boundaries{step}"
        write_kaldi_table(bounds[step], table)
    student = load_student(tiny_ofa_checkpoint).eval()
    return data, bounds, student, tiny_ofa_checkpoint, scp


def test_alpha_fit_is_the_utterance_mean_of_the_pretraining_losses(setup):
    data, bounds, student, _, scp = setup
    fits = alpha_fit(student, data, {"four": bounds[4], "seven": bounds[7]})
    assert list(fits) == ["four", "seven"]
    for name, step in (("four", 4), ("seven", 7)):
        l1s, bds = [], []
        with torch.no_grad():
            for utt, n in NUM_SAMPLES.items():
                wav = torch.from_numpy(soundfile.read(scp[utt], dtype="float32")[0])
                out = student(wav[None], torch.tensor([n]))
                ends = torch.tensor([[*range(step, frames(n), step), frames(n)]])
                l1, bd = alpha_losses(out.alpha_pred, ends, out.frame_lengths)
                l1s.append(float(l1))
                bds.append(float(bd))
        assert fits[name].num_utts == 3
        assert fits[name].l1 == pytest.approx(np.mean(l1s), rel=1e-5)
        assert fits[name].boundary == pytest.approx(np.mean(bds), rel=1e-5)
    # Different targets, different losses: the table is not one number repeated.
    assert fits["four"].boundary != pytest.approx(fits["seven"].boundary)


def test_missing_utterance_and_fixed_student_are_clear_errors(setup, tmp_path):
    data, bounds, _, _, _ = setup
    partial = tmp_path / "partial"
    partial.write_text("a 4 8 12 16 20 24 28 32 36 40 44 48 49\n")
    with pytest.raises(DataDirError, match=r"no line for 2 utterance\(s\).*espnet_ofa.bin.segment"):
        alpha_fit(build_student("tiny"), data, {"partial": partial})
    fixed = build_student("tiny", compression="fixed", frame_period_range=(40.0, 40.0),
                          default_frame_period=40.0)
    with pytest.raises(ValueError, match="no rate predictor"):
        alpha_fit(fixed, data, {"four": bounds[4]})


def test_cli_prints_one_row_per_model_and_boundary_file(setup, capsys):
    data, bounds, _, model, _ = setup
    assert main(["--data_dir", str(data), "--model", f"m={model}", "--model", f"n={model}",
                 "--boundaries", f"four={bounds[4]}", "--boundaries", f"seven={bounds[7]}"]) == 0
    rows = [line.strip("|").split("|") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("m", "four", "3"), ("m", "seven", "3"), ("n", "four", "3"), ("n", "seven", "3")]
    assert rows[0][3:] == rows[2][3:] and rows[0][3:] != rows[1][3:]  # same model, same losses
    # A missing checkpoint: a message, exit status 1, no traceback.
    assert main(["--data_dir", str(data), "--model", f"m={data}/none.pth",
                 "--boundaries", f"four={bounds[4]}"]) == 1
    assert "none.pth" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--data_dir", str(data), "--model", "no-equals-sign", "--boundaries", "x=y"])
