"""Issue 13: no lost data, no races, clear errors instead of tracebacks.

Each test feeds one of the bad or edge inputs a user tried and checks the behaviour the user
relies on: nothing lost, every entry kept, readable files, or an exception of the right type
whose message names the problem and the fix.
"""

import hashlib
import multiprocessing
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

from espnet_ofa.data import (
    DataDirError,
    check_waveform,
    check_waveform_batch,
    fix_data_dir,
    load_audio,
    read_kaldi_table,
    validate_data_dir,
)
from espnet_ofa.zoo import ZOO_ENV, ZooError, download_and_unpack, locate, publish

# ----------------------------------------------------------------------------- helpers


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def make_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.zeros(int(seconds * rate), dtype=np.float32), rate)
    return path


def make_archive(root: Path, payload: bytes = b"weights", name: str = "model.zip") -> Path:
    """An ESPnet archive made by ESPnet's own packer: a config naming a second file, as a
    downstream model's config names its OFA checkpoint. Run with ``root`` as cwd."""
    from espnet2.main_funcs.pack_funcs import pack

    exp = root / "exp"
    exp.mkdir(parents=True, exist_ok=True)
    (exp / "model.pth").write_bytes(payload)
    (exp / "ofa.pth").write_bytes(payload[::-1])
    write(exp / "config.yaml", yaml.safe_dump({"frontend": "ofa",
                                                "frontend_conf": {"model": "exp/ofa.pth"}}))
    pack(files={"asr_model_file": "exp/model.pth"}, yaml_files={"asr_train_config": "exp/config.yaml"},
         outpath=root / name, option=["exp/ofa.pth"])
    return root / name


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ----------------------------------------------------------------------------- lost data


def test_fix_data_dir_twice_keeps_the_first_backup(tmp_path):
    d = tmp_path / "data"
    original_text = "b two\na one\nc\n"
    write(d / "text", original_text)
    write(d / "utt2spk", "a s1\nb s1\nc s1\n")
    first = fix_data_dir(d)
    assert (first.backup_dir / "text").read_text() == original_text
    write(d / "text", "a one\nb changed\n")  # the user edits, then fixes again
    second = fix_data_dir(d)
    assert second.backup_dir != first.backup_dir
    # The originals of the first run are still there; the second run's are kept too.
    assert (first.backup_dir / "text").read_text() == original_text
    assert (second.backup_dir / "text").read_text() == "a one\nb changed\n"
    assert read_kaldi_table(d / "text") == {"a": "one", "b": "changed"}


def _publish_worker(archive, zoo, name, barrier):
    barrier.wait()
    publish(archive, zoo, name=name)


def test_concurrent_publishes_keep_every_index_entry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive = make_archive(tmp_path)
    zoo = tmp_path / "zoo"
    names = [f"model_{i}" for i in range(8)]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(names))
    procs = [ctx.Process(target=_publish_worker, args=(str(archive), str(zoo), n, barrier))
             for n in names]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * len(names)
    index = yaml.safe_load((zoo / "index.yaml").read_text())
    assert sorted(index) == names
    assert not [p.name for p in zoo.iterdir() if p.name.endswith(".tmp")]  # no leftovers


def test_published_files_are_readable_by_others(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive = make_archive(tmp_path)
    old = os.umask(0o022)
    try:
        where = Path(publish(archive, str(tmp_path / "zoo"), name="m"))
        assert mode(where) == 0o644
        assert mode(tmp_path / "zoo" / "index.yaml") == 0o644
        # Unpacked models in a shared cache too.
        files = download_and_unpack(str(where), cachedir=tmp_path / "cache")
        assert mode(Path(files["asr_model_file"])) == 0o644
        assert mode(Path(files["asr_model_file"]).parent.parent) == 0o755
        os.umask(0o027)  # the umask is respected, as by any file write
        where = Path(publish(archive, str(tmp_path / "zoo"), name="m2"))
        assert mode(where) == 0o640
    finally:
        os.umask(old)


@pytest.mark.parametrize("name", ["../x", "a/b", "/tmp/abs", "..", ".hidden", "", "a\\b"])
def test_publish_rejects_names_that_leave_the_zoo(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    archive = make_archive(tmp_path)
    zoo = tmp_path / "zoo" / "inner"
    with pytest.raises(ZooError, match="invalid model name.*--name"):
        publish(archive, str(zoo), name=name)
    assert not zoo.exists() and not (tmp_path / "zoo" / "x.zip").exists()


def _unpack_worker(archive, cachedir, barrier, queue):
    barrier.wait()
    try:
        files = download_and_unpack(archive, cachedir=cachedir)
        conf = yaml.safe_load(Path(files["asr_train_config"]).read_text())
        ofa = Path(conf["frontend_conf"]["model"]).read_bytes()
        model = Path(files["asr_model_file"]).read_bytes()
        queue.put((hashlib.sha256(model).hexdigest(), hashlib.sha256(ofa).hexdigest()))
    except Exception as err:  # reported to the parent, which fails the test
        queue.put(repr(err))


def test_concurrent_unpacks_of_one_archive_all_load(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    payload = os.urandom(3 << 20)  # big enough for extractions to overlap
    archive = make_archive(tmp_path, payload)
    ctx = multiprocessing.get_context("fork")
    jobs = 6
    barrier, queue = ctx.Barrier(jobs), ctx.Queue()
    procs = [ctx.Process(target=_unpack_worker,
                         args=(str(archive), str(tmp_path / "cache"), barrier, queue))
             for _ in range(jobs)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    expected = (hashlib.sha256(payload).hexdigest(), hashlib.sha256(payload[::-1]).hexdigest())
    assert results == [expected] * jobs
    # One unpacked copy, no partial folders left.
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [hashlib.sha256(archive.read_bytes()).hexdigest()]


def test_changed_archive_at_the_same_path_is_unpacked_again(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive = make_archive(tmp_path, b"version 1")
    first = download_and_unpack(str(archive), cachedir=tmp_path / "cache")
    assert Path(first["asr_model_file"]).read_bytes() == b"version 1"
    make_archive(tmp_path, b"version 2")  # re-packed in place
    second = download_and_unpack(str(archive), cachedir=tmp_path / "cache")
    assert Path(second["asr_model_file"]).read_bytes() == b"version 2"
    assert Path(first["asr_model_file"]).read_bytes() == b"version 1"  # not rewritten under a reader


def test_interrupted_unpack_leaves_nothing_half_done(tmp_path, monkeypatch):
    from espnet_ofa.zoo import archive as archive_module
    from espnet_ofa.zoo.archive import unpack_archive

    monkeypatch.chdir(tmp_path)
    archive = make_archive(tmp_path)
    real = archive_module._extract

    def crash(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt  # killed after extracting, before the rename

    monkeypatch.setattr(archive_module, "_extract", crash)
    with pytest.raises(KeyboardInterrupt):
        unpack_archive(archive, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.setattr(archive_module, "_extract", real)
    files = unpack_archive(archive, tmp_path / "cache")
    assert Path(files["asr_model_file"]).read_bytes() == b"weights"


# ----------------------------------------------------------------------------- clear errors


def test_float64_waveforms_are_accepted_as_float32():
    from espnet_ofa.models.student import build_student

    wav64 = np.sin(np.arange(16000) / 7.0)[None]  # numpy's default dtype: float64
    lengths = torch.tensor([16000])
    assert check_waveform_batch(torch.from_numpy(wav64), lengths).dtype == torch.float32
    assert check_waveform_batch(wav64, lengths).dtype == torch.float32
    assert check_waveform(wav64[0], 16000).dtype == torch.float32
    torch.manual_seed(0)
    student = build_student("tiny").eval()
    with torch.no_grad():
        out64 = student(torch.from_numpy(wav64), lengths, frame_period=40.0)
        out32 = student(torch.from_numpy(wav64).float(), lengths, frame_period=40.0)
    torch.testing.assert_close(out64.last_hidden, out32.last_hidden)


@pytest.mark.parametrize("name", ["wav.scp", "text", "utt2spk", "segments"])
def test_non_utf8_table_names_file_and_line(tmp_path, name):
    d = tmp_path / "data"
    make_wav(d / "a.wav", 0.5)
    tables = {"wav.scp": f"a {d / 'a.wav'}\n", "text": "u1 hello\n", "utt2spk": "u1 s1\n",
              "segments": "u1 a 0 0.4\n"}
    for table, text in tables.items():
        write(d / table, text)
    with open(d / name, "ab") as f:
        f.write("u2 caf\xe9\n".encode("latin-1"))  # line 2 is Latin-1
    with pytest.raises(DataDirError) as err:
        validate_data_dir(d, optional=("text", "utt2spk", "segments"))
    message = str(err.value)
    assert f"{d / name}:2" in message and "UTF-8" in message and "iconv" in message
    with pytest.raises(DataDirError, match=r":2: not UTF-8"):
        fix_data_dir(d)


def test_segment_past_the_end_of_its_audio(tmp_path):
    d = tmp_path / "data"
    make_wav(d / "rec.wav", 1.0)
    write(d / "wav.scp", f"rec {d / 'rec.wav'}\n")
    write(d / "segments", "u1 rec 0.0 0.5\nu2 rec 0.5 3.0\n")
    with pytest.raises(DataDirError) as err:
        validate_data_dir(d, optional=("segments",))
    message = str(err.value)
    assert f"{d / 'segments'}:2" in message and "3 s" in message and "1.000 s long" in message
    write(d / "segments", "u1 rec 0.0 0.5\nu2 rec 0.5 1.2\n")  # within Kaldi's 0.5 s overshoot
    assert validate_data_dir(d, optional=("segments",)).num_utterances == 2
    with pytest.raises(ValueError, match=r"starts past the end of the audio \(1.000 s long\)"):
        load_audio(str(d / "rec.wav"), segment=(2.0, 3.0))


def test_text_file_named_pth_is_not_a_checkpoint(tmp_path, tiny_ofa_copy):
    from espnet_ofa.frontend.ofa import OFAFrontend
    from espnet_ofa.models.pretrained import CheckpointError, load_student

    checkpoint = tiny_ofa_copy
    checkpoint.write_text("this is a text file, not weights\n")
    for load in (lambda: load_student(checkpoint),
                 lambda: OFAFrontend(fs="16k", model=str(checkpoint), frame_period=40)):
        with pytest.raises(CheckpointError, match="is not a torch checkpoint.*holds text.*valid.loss.best.pth"):
            load()
    checkpoint.write_bytes(b"")
    with pytest.raises(CheckpointError, match="is empty.*copy or download it again"):
        load_student(checkpoint)


def test_null_student_conf_is_a_clear_error(tmp_path, tiny_ofa_copy):
    from espnet_ofa.models.pretrained import CheckpointError, load_student

    checkpoint = tiny_ofa_copy
    config = checkpoint.parent / "config.yaml"
    conf = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**conf, "student_conf": None}))
    with pytest.raises(CheckpointError, match=r"student_conf must be a mapping.*student_conf: \{\}"):
        load_student(checkpoint)
    config.write_text(yaml.safe_dump({**conf, "student_conf": {"no_such_field": 1}}))
    with pytest.raises(CheckpointError, match="does not fit StudentConfig.*no_such_field"):
        load_student(checkpoint)


def test_a_folder_given_as_a_model(tmp_path, monkeypatch, tiny_ofa_copy):
    from espnet_ofa.bin import transcribe
    from espnet_ofa.frontend.ofa import OFAFrontend
    from espnet_ofa.models.pretrained import CheckpointError, load_student

    checkpoint = tiny_ofa_copy
    folder = checkpoint.parent
    with pytest.raises(CheckpointError, match="is a directory.*valid.loss.best.pth"):
        load_student(folder)
    with pytest.raises(ZooError, match="is a directory, not a model.*valid.loss.best.pth"):
        OFAFrontend(fs="16k", model=str(folder), frame_period=40)
    wav = make_wav(tmp_path / "a.wav", 0.5)
    with pytest.raises(SystemExit) as exit_info:
        transcribe.main(["--model", str(folder), str(wav)])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("index, pattern", [
    ("- just\n- a list\n", "must map model names to entries, but holds a list"),
    ("m: a string\n", "entry 'm' must be a mapping"),
    ("m: {sha256: " + "0" * 64 + "}\n", "entry 'm' has no file"),
    ("m: {file: m.zip}\n", "entry 'm' has no sha256"),
    ("m: {file: 3, sha256: x}\n", "entry 'm' has no file"),
    ("m: {file: ../../etc/passwd, sha256: " + "0" * 64 + "}\n", "must be a file name inside"),
    ("m: {file: m.zip, sha256: 12}\n", "sha256 must be 64 lowercase hex digits"),
    ("m: [unclosed\n", "is not readable YAML"),
])
def test_malformed_zoo_index_entries(tmp_path, monkeypatch, index, pattern):
    zoo = tmp_path / "zoo"
    write(zoo / "index.yaml", index)
    monkeypatch.setenv(ZOO_ENV, str(zoo))
    with pytest.raises(ZooError) as err:
        locate("m")
    assert str(zoo / "index.yaml") in str(err.value) and re.search(pattern, str(err.value))
    assert "fix" in str(err.value) or "publish the model again" in str(err.value)


def test_publish_does_not_overwrite_a_malformed_index(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive = make_archive(tmp_path)
    zoo = tmp_path / "zoo"
    write(zoo / "index.yaml", "- not a mapping\n")
    with pytest.raises(ZooError, match="must map model names"):
        publish(archive, str(zoo), name="m")
    assert (zoo / "index.yaml").read_text() == "- not a mapping\n"


def _no_model_loading(monkeypatch):
    import espnet_ofa.inference

    def forbidden(*args, **kwargs):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(espnet_ofa.inference, "load_pretrained", forbidden)


@pytest.mark.parametrize("kind", ["missing", "not audio", "folder"])
def test_transcribe_checks_inputs_before_loading_the_model(tmp_path, monkeypatch, capsys, kind):
    from espnet_ofa.bin import transcribe

    _no_model_loading(monkeypatch)
    good = make_wav(tmp_path / "good.wav", 0.5)
    bad = {"missing": tmp_path / "missing.wav",
           "not audio": write(tmp_path / "notes.wav", "not audio at all\n"),
           "folder": tmp_path}[kind]
    with pytest.raises(SystemExit) as exit_info:
        transcribe.main(["--model", "whatever.zip", str(good), str(bad)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert str(bad) in err and {"missing": "does not exist", "not audio": "convert it",
                                "folder": "is a directory"}[kind] in err


class _FakeSpeech2Text:
    """Records what the inference class was built with (a real one needs a trained model)."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.asr_model = torch.nn.Module()  # where transcribe's timing hooks look

    def __call__(self, wav):
        return [("hello", ["hello"], [1], None)]


def test_transcribe_finds_a_local_zoo_name_and_verifies_it(tmp_path, monkeypatch, capsys):
    from espnet_ofa.bin import transcribe
    from espnet_ofa.espnet_tasks import EspnetTask

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    archive = make_archive(tmp_path)
    zoo = tmp_path / "zoo"
    publish(archive, str(zoo), name="fsdd_asr")
    monkeypatch.setenv(ZOO_ENV, str(zoo))
    monkeypatch.setattr(EspnetTask, "inference_cls", lambda self: _FakeSpeech2Text)
    wav = make_wav(tmp_path / "a.wav", 0.5)
    capsys.readouterr()
    transcribe.main(["--model", "fsdd_asr", str(wav)])
    assert capsys.readouterr().out == f"{wav}\thello\n"

    from espnet_ofa.inference import load_pretrained

    s2t = load_pretrained("fsdd_asr", "asr", beam_size=3)
    conf = yaml.safe_load(Path(s2t.kwargs["asr_train_config"]).read_text())
    assert Path(conf["frontend_conf"]["model"]).read_bytes() == b"weights"[::-1]
    assert s2t.kwargs["beam_size"] == 3
    transducer = load_pretrained("fsdd_asr", "asr_transducer")
    assert transducer.kwargs["return_decoded_hyp"] is True

    (zoo / "fsdd_asr.zip").write_bytes(archive.read_bytes()[:200])  # damaged after publishing
    with pytest.raises(SystemExit) as exit_info:
        transcribe.main(["--model", "fsdd_asr", str(wav)])
    assert exit_info.value.code == 2
    assert "sha256" in capsys.readouterr().err


def test_transcribe_a_truncated_archive_says_download_again(tmp_path, monkeypatch, capsys):
    from espnet_ofa.bin import transcribe

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    archive = make_archive(tmp_path)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    wav = make_wav(tmp_path / "a.wav", 0.5)
    with pytest.raises(SystemExit) as exit_info:
        transcribe.main(["--model", str(truncated), str(wav)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "truncated" in err and "download" in err and "BadZipFile" not in err


def test_an_ssl_archive_is_not_a_downstream_model(tmp_path, monkeypatch, tiny_ofa_copy):
    from espnet_ofa.inference import load_pretrained
    from espnet_ofa.zoo import pack_ofa_ssl

    monkeypatch.chdir(tmp_path)
    checkpoint = tiny_ofa_copy
    archive = pack_ofa_ssl(checkpoint.parent / "config.yaml", checkpoint, tmp_path / "ssl.zip")
    with pytest.raises(ZooError, match="not a asr model.*frontend_conf.model"):
        load_pretrained(str(archive), "asr", cachedir=tmp_path / "cache")
