"""The Hugging Face export: a transformers directory that loads offline without espnet_ofa,
runs at a period chosen per call with exact lengths, and matches ``frontend: ofa``."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from espnet_ofa.bin import export_hf
from espnet_ofa.export.huggingface import model_sources
from espnet_ofa.frontend.ofa import OFAFrontend
from espnet_ofa.models.pretrained import save_student
from espnet_ofa.models.student import build_student

# Two utterances, the second right-padded: lengths in samples.
LENGTHS = (16000, 9001)
PERIODS = (20.0, 40.0, 60.0)


def cnn_frames(samples: int) -> int:
    return (samples - 400) // 320 + 1


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny OFA models as ofa_ssl_train writes them: the CNN front and the mel front."""
    root = tmp_path_factory.mktemp("ofa")
    torch.manual_seed(0)
    cnn = save_student(build_student("tiny"), root / "cnn", preset="tiny")
    mel = save_student(build_student("tiny", front="mel", frame_period_range=(20.0, 80.0)),
                       root / "mel", preset="tiny")
    return {"cnn": cnn, "mel": mel}


@pytest.fixture(scope="module")
def waveforms():
    gen = torch.Generator().manual_seed(1)
    wav = torch.randn(len(LENGTHS), max(LENGTHS), generator=gen) * 0.1
    for b, n in enumerate(LENGTHS):
        wav[b, n:] = 0.0
    return wav


# Runs in a fresh interpreter where espnet_ofa cannot be imported, offline, with its own
# module cache: what a user with torch, torchaudio and transformers only gets.
LOAD_SCRIPT = textwrap.dedent("""
    import sys
    for name in [m for m in sys.modules if m.startswith("espnet_ofa")]:
        del sys.modules[name]
    sys.modules["espnet_ofa"] = None  # any import of it fails
    import json, torch
    from transformers import AutoFeatureExtractor, AutoModel
    model_dirs, wav_path, out_path = sys.argv[1:4]
    wav = torch.load(wav_path)
    results, errors = {}, {}
    for name in model_dirs.split(","):
        model = AutoModel.from_pretrained(name, trust_remote_code=True).eval()
        extractor = AutoFeatureExtractor.from_pretrained(name)
        batch = extractor([w[:n].numpy() for w, n in zip(wav, LENGTHS)], sampling_rate=16000,
                          return_tensors="pt", padding=True)
        runs = {}
        with torch.no_grad():
            for key, rate in [("p20", dict(frame_period=20.0)), ("p40", dict(frame_period=40.0)),
                              ("p60", dict(frame_period=60.0)), ("lam", dict(lam=0.5))]:
                out = model(batch.input_values, attention_mask=batch.attention_mask, **rate)
                runs[key] = {"last": out.last_hidden_state, "hidden": list(out.hidden_states),
                             "lengths": out.output_lengths}
            runs["no_hidden"] = model(batch.input_values, frame_period=40.0,
                                      output_hidden_states=False).hidden_states
        results[name] = runs
        for key, call in [
            ("period", lambda: model(batch.input_values, frame_period=150.0)),
            ("model_8k", lambda: model(batch.input_values, frame_period=40.0, sampling_rate=8000)),
            ("extractor_8k", lambda: extractor([wav[0].numpy()], sampling_rate=8000)),
            ("mask", lambda: model(batch.input_values, attention_mask=batch.attention_mask.flip(1),
                                   frame_period=40.0)),
        ]:
            try:
                call()
                errors[f"{name}:{key}"] = None
            except ValueError as err:
                errors[f"{name}:{key}"] = str(err)
    leaked = [m for m in sys.modules if m.startswith("espnet_ofa") and sys.modules[m] is not None]
    torch.save({"results": results, "errors": errors, "leaked": leaked}, out_path)
""")


@pytest.fixture(scope="module")
def exported(checkpoints, waveforms, tmp_path_factory):
    """Both models exported with the CLI and loaded in a process without espnet_ofa."""
    root = tmp_path_factory.mktemp("hf")
    dirs = {}
    for name, checkpoint in checkpoints.items():
        dirs[name] = root / f"ofa_{name}"
        export_hf.main(["--model", str(checkpoint), "--out", str(dirs[name])])
    torch.save(waveforms, root / "wav.pt")
    env = {**os.environ, "HF_HOME": str(root / "hf_home"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    script = f"LENGTHS = {LENGTHS!r}\n" + LOAD_SCRIPT
    run = subprocess.run(
        [sys.executable, "-c", script, ",".join(str(d) for d in dirs.values()),
         str(root / "wav.pt"), str(root / "out.pt")],
        env=env, cwd=root, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = torch.load(root / "out.pt")
    return dirs, loaded


def test_directory_layout_and_self_contained_code(exported):
    dirs, loaded = exported
    files = {p.name for p in dirs["cnn"].iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "modeling_ofa.py",
            "README.md"} <= files
    assert not any(name.endswith((".bin", ".pth")) for name in files)
    config = json.loads((dirs["cnn"] / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_ofa.OFAModel"
    assert config["student_conf"]["frame_period_range"] == [20.0, 90.0]
    for name in files:
        if name.endswith(".py"):
            text = (dirs["cnn"] / name).read_text()
            assert "from espnet_ofa" not in text and "import espnet_ofa" not in text, name
    # The shipped code is the package's own source with relative imports, nothing else.
    assert set(model_sources()) == {n for n in files if n.endswith(".py")}
    assert loaded["leaked"] == []


def test_model_card_states_range_and_how_to_choose(exported):
    dirs, _ = exported
    card = (dirs["mel"] / "README.md").read_text()
    assert "20-80 ms" in card
    assert "Choosing a period" in card and "| 40 ms | 25.0 | 0.50 |" in card
    assert "trust_remote_code=True" in card


@pytest.mark.parametrize("name", ["cnn", "mel"])
def test_features_and_lengths_match_espnet_frontend(exported, checkpoints, waveforms, name):
    dirs, loaded = exported
    runs = loaded["results"][str(dirs[name])]
    lengths = torch.tensor(LENGTHS)
    student_layers = build_student("tiny").config.num_layers
    frontend = OFAFrontend(model=str(checkpoints[name]), frame_period=40.0,
                           layer=student_layers).eval()
    for period in PERIODS:
        run = runs[f"p{period:g}"]
        expected = [max(1, round(cnn_frames(n) * 20 / period)) for n in LENGTHS]
        assert run["lengths"].tolist() == expected
        frontend.set_rate(frame_period=period)
        with torch.no_grad():
            feats, feat_lengths = frontend(waveforms, lengths)
        assert run["lengths"].tolist() == feat_lengths.tolist()
        assert run["last"].shape == feats.shape
        torch.testing.assert_close(run["last"], feats, atol=1e-5, rtol=0)
        assert len(run["hidden"]) == student_layers + 1 and runs["no_hidden"] is None
        assert all(h.shape == feats.shape for h in run["hidden"])
        assert not run["last"][1, expected[1]:].any()
    frontend.set_rate(lam=0.5)
    with torch.no_grad():
        feats, feat_lengths = frontend(waveforms, lengths)
    assert runs["lam"]["lengths"].tolist() == feat_lengths.tolist()
    torch.testing.assert_close(runs["lam"]["last"], feats, atol=1e-5, rtol=0)


def test_bad_input_is_refused_with_the_fix(exported):
    dirs, loaded = exported
    errors = {k.split(":", 1)[1] + ("" if k.startswith(str(dirs["cnn"])) else "_mel"): v
              for k, v in loaded["errors"].items()}
    assert "150 ms is outside the range" in errors["period"] and "[20, 90]" in errors["period"]
    assert "[20, 80]" in errors["period_mel"]
    assert "8000" in errors["model_8k"] and "resample" in errors["model_8k"]
    assert "16000" in errors["extractor_8k"]
    assert "right padding" in errors["mask"]


def test_export_refuses_what_is_not_an_ofa_model(tmp_path, capsys):
    asr = tmp_path / "asr"
    asr.mkdir()
    (asr / "config.yaml").write_text(yaml.safe_dump({"frontend": "default", "encoder": "rnn"}))
    torch.save({"encoder.w": torch.zeros(2)}, asr / "valid.acc.best.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not a model")
    for model, message in [(asr / "valid.acc.best.pth", "not an ofa_ssl_train config"),
                           (tmp_path / "missing.pth", "does not exist"),
                           (text, "config.yaml")]:
        out = tmp_path / "hf_out"
        with pytest.raises(SystemExit) as exit_info:
            export_hf.main(["--model", str(model), "--out", str(out)])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
        assert not out.exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".hf_out")]
    assert leftovers == []


def test_export_does_not_replace_a_directory_unasked(checkpoints, tmp_path, capsys):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit):
        export_hf.main(["--model", str(checkpoints["cnn"]), "--out", str(out)])
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
