"""espnet3: ``frontend: ofa`` in its task copies, the data-dir dataset, the best-model
export, and the ``egs3/fsdd/asr1`` recipe end to end on its smoke path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from espnet_ofa.data.datadir import DataDirError, read_kaldi_table
from espnet_ofa.integrations.espnet3_data import DataDirDataset, FsddDataset
from espnet_ofa.integrations.espnet3_system import best_checkpoint, export_best_model

REPO = Path(__file__).resolve().parents[1]
ASR_TASK = "espnet3.systems.esp2_asr.task.ASRTask"


@pytest.fixture(scope="module")
def ofa_checkpoint(tiny_ofa_checkpoint) -> Path:
    return tiny_ofa_checkpoint


def test_espnet3_task_builds_a_model_with_the_ofa_frontend(ofa_checkpoint, tmp_path):
    from espnet3.utils.task_utils import get_espnet_model

    from espnet_ofa.frontend.ofa import OFAFrontend

    tokens = tmp_path / "tokens.txt"
    tokens.write_text("<blank>\n<unk>\none\ntwo\n<sos/eos>\n")
    model = get_espnet_model(ASR_TASK, {
        "token_list": str(tokens),
        "frontend": "ofa",
        "frontend_conf": {"fs": "16k", "model": str(ofa_checkpoint), "frame_period": 40},
        "normalize": None,
        "encoder": "rnn", "encoder_conf": {"num_layers": 1, "hidden_size": 8,
                                           "output_size": 8, "subsample": None},
        "decoder": None, "model_conf": {"ctc_weight": 1.0},
    })
    assert isinstance(model.frontend, OFAFrontend)
    wav_lengths = torch.tensor([16320, 9920])  # 50 and 30 frames at 20 ms
    wav = 0.1 * torch.randn(2, 16320)
    feats, lengths = model.frontend(wav, wav_lengths)
    assert lengths.tolist() == [25, 15]  # round(T * 20 / 40): 40 ms frames
    assert feats.shape[:2] == (2, 25)


def write_data_dir(path: Path, takes) -> None:
    path.mkdir(parents=True)
    ids = sorted(takes)
    (path / "wav.scp").write_text("".join(f"{u} {takes[u][0]}\n" for u in ids))
    (path / "text").write_text("".join(f"{u} {takes[u][1]}\n" for u in ids))


def test_data_dir_dataset_reads_resamples_and_checks(tmp_path, fsdd_recordings):
    takes = {"u1": (fsdd_recordings / "0_george_0.wav", "zero"),
             "u2": (fsdd_recordings / "5_theo_3.wav", "five")}
    write_data_dir(tmp_path / "d", takes)
    ds = DataDirDataset(tmp_path / "d", fs=16000, with_utt_id=True)
    assert len(ds) == 2 and ds.utt_ids == ["u1", "u2"]
    item = ds[1]
    assert item["text"] == "five" and item["utt_id"] == "u2"
    assert item["speech"].dtype == np.float32 and item["speech"].ndim == 1
    import soundfile as sf

    n8k = sf.info(str(fsdd_recordings / "5_theo_3.wav")).frames  # FSDD is 8 kHz: twice the samples
    assert abs(item["speech"].shape[0] - 2 * n8k) <= 1
    assert "utt_id" not in DataDirDataset(tmp_path / "d")[0]  # training collates every key

    (tmp_path / "d" / "text").write_text("u1 zero\n")  # u2 has no transcript
    with pytest.raises(DataDirError, match="text"):
        DataDirDataset(tmp_path / "d")
    with pytest.raises(ValueError, match="split must be one of"):
        FsddDataset("train_sp", tmp_path)
    with pytest.raises(FileNotFoundError, match="create_dataset"):
        FsddDataset("test", tmp_path / "nothing")


def fake_experiment(exp: Path, monitor: str = "valid/loss") -> Path:
    """last.ckpt and a best checkpoint, as Lightning's ModelCheckpoint leaves them."""
    exp.mkdir(parents=True)
    best = exp / "epoch1_step20_valid.loss.ckpt"
    torch.save({"state_dict": {"encoder.w": torch.ones(2)}}, best)
    torch.save({"state_dict": {"encoder.w": torch.zeros(2)}, "callbacks": {
        "ModelCheckpoint{'monitor': None}": {"monitor": None, "best_model_path": ""},
        f"ModelCheckpoint{{'monitor': '{monitor}'}}": {"monitor": monitor,
                                                      "best_model_path": str(best)},
    }}, exp / "last.ckpt")
    return best


def test_export_best_model_writes_espnet_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the train stage"):
        best_checkpoint(tmp_path)
    fake_experiment(tmp_path / "a")
    out = export_best_model(tmp_path / "a")
    assert out == tmp_path / "a" / "valid.loss.best.pth"
    assert torch.equal(torch.load(out)["encoder.w"], torch.ones(2))  # the best, not the last
    with pytest.raises(FileNotFoundError, match="best_model_criterion"):
        best_checkpoint(tmp_path / "a", monitor="valid/acc")
    # A moved experiment: Lightning's recorded absolute path is stale; the name is not.
    shutil.move(tmp_path / "a", tmp_path / "b")
    assert best_checkpoint(tmp_path / "b").parent == tmp_path / "b"


@pytest.fixture(scope="module")
def egs3_recipe(tmp_path_factory) -> Path:
    """egs3/fsdd/asr1 copied into a tree whose egs2/ is the repository's (path.sh, db.sh)."""
    root = tmp_path_factory.mktemp("repo")
    (root / "egs2").symlink_to(REPO / "egs2")
    recipe = root / "egs3" / "fsdd" / "asr1"
    shutil.copytree(REPO / "egs3" / "fsdd" / "asr1", recipe,
                    ignore=shutil.ignore_patterns("data", "exp"))
    return recipe


def test_egs3_fsdd_smoke_trains_decodes_and_scores(egs3_recipe, ofa_checkpoint):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["./run.sh", "--stages", "all", "--smoke", "--ofa_model", str(ofa_checkpoint)],
        cwd=egs3_recipe, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = egs3_recipe / "exp" / "asr_ofa_p40_smoke"
    config = (exp / "config.yaml").read_text()
    assert "frontend: ofa" in config and "frame_period: 40" in config
    assert (exp / "valid.loss.best.pth").is_file()
    data = egs3_recipe / "data" / "fsdd_smoke"
    for test_set in ("test", "test_theo"):
        hyps = read_kaldi_table(exp / "decode" / test_set / "text.scp", allow_empty_values=True)
        assert list(hyps) == list(read_kaldi_table(data / test_set / "text"))  # every utterance
    scores = json.loads((exp / "decode" / "metrics.json").read_text())
    wer = scores["espnet3.systems.esp2_asr.metrics.wer.WER"]
    assert set(wer) == {"test", "test_theo"}
    assert all(np.isfinite(v["WER"]) and v["WER"] >= 0 for v in wer.values())
