"""Model zoo: pack an OFA SSL model, publish it to a local zoo, resolve and load it."""

import zipfile

import pytest
import torch
import yaml

from espnet_ofa.models.pretrained import load_student, save_student
from espnet_ofa.models.student import build_student
from espnet_ofa.zoo import (
    ZOO_ENV,
    ZooError,
    locate,
    pack_ofa_ssl,
    publish,
    resolve_ofa_checkpoint,
    verify_archive,
)


@pytest.fixture
def experiment(tmp_path, monkeypatch):
    """A tiny 'trained' OFA experiment in tmp_path/exp/ofa, with tmp_path as cwd."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    student = build_student("tiny").eval()
    exp = tmp_path / "exp" / "ofa"
    save_student(student, exp, preset="tiny", teacher="HUBERT_BASE",
                 train_data_path_and_name_and_type=[["dump/train/wav.scp", "speech", "sound"]])
    return student, exp


def run(model, period=50.0):
    wav = torch.sin(torch.arange(16000) / 7.0)[None]
    with torch.no_grad():
        return model(wav, torch.tensor([16000]), frame_period=period).last_hidden


def test_pack_publish_resolve_round_trip(experiment, tmp_path, monkeypatch):
    student, exp = experiment
    archive = pack_ofa_ssl(exp / "config.yaml", exp / "valid.loss.best.pth",
                           tmp_path / "packed" / "ofa_tiny.zip",
                           results="| period | metric |\n| 20 | 1.0 |")
    meta = verify_archive(archive)
    assert meta["files"] == {"ofa_model_file": "exp/ofa/valid.loss.best.pth"}
    with zipfile.ZipFile(archive) as z:
        card = z.read("README.md").decode()
    assert "HUBERT_BASE" in card and "20-90 ms" in card and "| 20 | 1.0 |" in card
    assert not list((tmp_path / "packed").glob("tmp*"))  # no partial files left behind

    zoo = tmp_path / "zoo"
    published = publish(archive, str(zoo), description="tiny")
    index = yaml.safe_load((zoo / "index.yaml").read_text())
    assert index["ofa_tiny"]["file"] == "ofa_tiny.zip" and len(index["ofa_tiny"]["sha256"]) == 64
    assert published == str(zoo / "ofa_tiny.zip")

    monkeypatch.setenv(ZOO_ENV, str(zoo))
    checkpoint = resolve_ofa_checkpoint("ofa_tiny", cachedir=tmp_path / "cache")
    assert str(checkpoint).startswith(str(tmp_path / "cache"))
    torch.testing.assert_close(run(load_student(checkpoint)), run(student))
    # A local zip path works the same, without a zoo.
    by_path = resolve_ofa_checkpoint(str(archive), cachedir=tmp_path / "cache2")
    torch.testing.assert_close(run(load_student(by_path)), run(student))


def test_corrupt_truncated_and_missing_archives_fail_clearly(experiment, tmp_path, monkeypatch):
    _, exp = experiment
    archive = pack_ofa_ssl(exp / "config.yaml", exp / "valid.loss.best.pth", tmp_path / "m.zip")
    data = archive.read_bytes()

    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ZooError, match="truncated"):
        verify_archive(truncated)

    corrupt = tmp_path / "corrupt.zip"
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo("exp/ofa/valid.loss.best.pth")
    flipped = bytearray(data)
    flipped[info.header_offset + 200] ^= 0xFF  # inside the stored weights
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(ZooError, match="corrupt|truncated"):
        verify_archive(corrupt)

    with pytest.raises(ZooError, match="does not exist"):
        verify_archive(tmp_path / "missing.zip")
    with pytest.raises(ZooError, match="sha256"):
        verify_archive(archive, sha256="0" * 64)

    zoo = tmp_path / "zoo"
    publish(archive, str(zoo), name="good")
    (zoo / "good.zip").write_bytes(data[:100])  # damaged after publishing
    monkeypatch.setenv(ZOO_ENV, str(zoo))
    with pytest.raises(ZooError, match="sha256"):
        resolve_ofa_checkpoint("good", cachedir=tmp_path / "cache")


def test_unknown_names_and_offline_publish(tmp_path, monkeypatch, experiment):
    monkeypatch.delenv(ZOO_ENV, raising=False)
    with pytest.raises(ZooError, match="not found"):
        locate("no_such_model")
    assert locate("someone/some_model") == {"source": "someone/some_model", "sha256": None}

    _, exp = experiment
    archive = pack_ofa_ssl(exp / "config.yaml", exp / "valid.loss.best.pth", tmp_path / "m.zip")
    import huggingface_hub

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", offline)
    with pytest.raises(ZooError, match="local zoo"):
        publish(archive, "hf:someone/ofa")


def test_pack_refuses_a_model_that_does_not_load(experiment, tmp_path):
    _, exp = experiment
    (exp / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a torch checkpoint"):
        pack_ofa_ssl(exp / "config.yaml", exp / "broken.pth", tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()


def test_frontend_takes_a_packed_model_or_zoo_name(experiment, tmp_path, monkeypatch):
    from espnet_ofa.frontend.ofa import OFAFrontend

    student, exp = experiment
    archive = pack_ofa_ssl(exp / "config.yaml", exp / "valid.loss.best.pth", tmp_path / "ofa.zip")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # espnet_model_zoo's default cache
    wav = torch.sin(torch.arange(16000) / 7.0)[None]
    outputs = []
    for model in (str(archive), "ofa_in_zoo"):
        if model == "ofa_in_zoo":
            publish(archive, str(tmp_path / "zoo"), name="ofa_in_zoo")
            monkeypatch.setenv(ZOO_ENV, str(tmp_path / "zoo"))
        frontend = OFAFrontend(fs="16k", model=model, frame_period=40, layer=2).eval()
        with torch.no_grad():
            feats, lengths = frontend(wav, torch.tensor([16000]))
        assert int(lengths) == round(((16000 - 400) // 320 + 1) * 20 / 40)
        outputs.append(feats)
    torch.testing.assert_close(outputs[0], outputs[1])
    torch.testing.assert_close(outputs[0], run(student, 40.0))
