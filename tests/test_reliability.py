"""Issue 13: no lost data, no races, clear errors instead of tracebacks.

Each test feeds one of the bad or edge inputs a user tried and checks the behaviour the user
relies on: nothing lost, every entry kept, readable files, or an exception of the right type
whose message names the problem and the fix.
"""

import hashlib
import multiprocessing
import os
import stat
import zipfile
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
