"""Stage 12 on a rerun: a decode dir that holds exactly the decoding asked for is kept."""

from __future__ import annotations

from pathlib import Path

from espnet_ofa.bin.decode import main as decode_main


def _files(tmp_path: Path):
    config, model, data = tmp_path / "config.yaml", tmp_path / "model.pth", tmp_path / "test"
    config.write_text("frontend: ofa\n")
    model.write_bytes(b"weights v1")
    data.mkdir()
    (data / "wav.scp").write_text("u1 /a.wav\n")
    return config, model, data


def _args(config, model, data, out, *extra):
    return ["--train_config", str(config), "--model_file", str(model), "--data_dirs", str(data),
            "--out_dir", str(out), "--frame_periods", "40", "80", "--own_period", "true",
            "--num_splits", "1", *extra]


def test_a_finished_decoding_is_recognised_and_any_change_redoes_it(tmp_path):
    config, model, data = _files(tmp_path)
    out = tmp_path / "decode"
    args = _args(config, model, data, out)
    assert decode_main(args + ["--done", "check"]) == 1  # never decoded
    out.mkdir()
    assert decode_main(args + ["--done", "mark"]) == 0
    assert decode_main(args + ["--done", "check"]) == 0
    # Other periods, flags, jobs or inference options: decoded again.
    assert decode_main(_args(config, model, data, out, "--learned", "true") +
                       ["--done", "check"]) == 1
    changed = [a if a != "80" else "90" for a in args]
    assert decode_main(changed + ["--done", "check"]) == 1
    split = [a if a != "1" else "2" for a in args]
    assert decode_main(split + ["--done", "check"]) == 1
    infer = tmp_path / "decode.yaml"
    infer.write_text("ctc_greedy: true\n")
    assert decode_main(args + ["--inference_config", str(infer), "--done", "check"]) == 1
    # A retrained model (same path, other weights) or other test audio: decoded again.
    model.write_bytes(b"weights v2")
    assert decode_main(args + ["--done", "check"]) == 1
    decode_main(args + ["--done", "mark"])
    (data / "wav.scp").write_text("u1 /b.wav\n")
    assert decode_main(args + ["--done", "check"]) == 1
    # A cut-off mark is no mark.
    (data / "wav.scp").write_text("u1 /a.wav\n")
    decode_main(args + ["--done", "mark"])
    mark = out / "decoded.json"
    mark.write_text(mark.read_text()[:20])
    assert decode_main(args + ["--done", "check"]) == 1
