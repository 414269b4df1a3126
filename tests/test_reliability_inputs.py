"""Bad and unusual inputs that used to give a silent wrong answer or a raw error.

Each test feeds one input a user tried and checks what the user relies on: the right
number of frames, a model that loads only when its weights are intact, data-dir files that
agree with each other, or a ValueError whose message names the problem and the fix.
"""

from __future__ import annotations

import math
import os
import string
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from espnet_ofa.compression import Rate, cif, fixed_rate_alpha, rate_alpha
from espnet_ofa.data import DataDirError, check_waveform, fix_data_dir, validate_data_dir
from espnet_ofa.data.datadir import read_table_lines
from espnet_ofa.frontend.ofa import ENV_FRAME_PERIOD, ENV_LAM, OFAFrontend
from espnet_ofa.models.pretrained import CheckpointError, load_student, save_student
from espnet_ofa.models.student import build_student
from espnet_ofa.recipe.tokens import make_token_list
from espnet_ofa.zoo import ZooError, locate, pack_ofa_ssl, publish, resolve_ofa_checkpoint
from espnet_ofa.zoo.downstream import pack_downstream

LENGTHS = torch.tensor([10, 6])


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return build_student("tiny").eval()


@pytest.fixture
def checkpoint(student, tmp_path):
    return save_student(student, tmp_path / "exp" / "ofa", preset="tiny")


@pytest.fixture(autouse=True)
def no_env_rate(monkeypatch):
    monkeypatch.delenv(ENV_FRAME_PERIOD, raising=False)
    monkeypatch.delenv(ENV_LAM, raising=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- compression


def test_lam_mode_refuses_weights_above_one_instead_of_multiplying_frames():
    logits = torch.full((2, 10), 3.0)  # logits passed instead of probabilities
    with pytest.raises(ValueError, match=r"alpha_pred must be <= 1.*maximum of 3.*torch.sigmoid"):
        rate_alpha(logits, LENGTHS, lam=0.5)
    with pytest.raises(ValueError, match="alpha_pred must be <= 1"):
        rate_alpha(logits, LENGTHS, frame_period=40.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30), st.floats(0.0, 2.0),
       st.integers(1, 30))
def test_probabilities_never_give_more_output_frames_than_input_frames(values, lam, length):
    """The general rule behind the lam check: CIF on rate_alpha's weights fires at most once
    per valid input frame, at any lam."""
    alpha_pred = torch.tensor(values)[None]
    lengths = torch.tensor([min(length, alpha_pred.shape[1])])
    alpha = rate_alpha(alpha_pred, lengths, lam=lam)
    out = cif(torch.ones(1, alpha_pred.shape[1], 2), alpha, lengths)
    assert 1 <= int(out.lengths[0]) <= int(lengths[0])


def test_nan_in_padding_is_ignored_and_in_valid_frames_refused():
    alpha_pred = torch.rand(2, 10)
    padded = alpha_pred.clone()
    padded[1, 6:] = math.nan  # utterance 1 has 6 valid frames
    expected = rate_alpha(alpha_pred, LENGTHS, frame_period=40.0)
    assert torch.equal(rate_alpha(padded, LENGTHS, frame_period=40.0), expected)
    x = torch.randn(2, 10, 3)
    assert torch.equal(cif(x, padded, LENGTHS).frames, cif(x, alpha_pred.masked_fill(
        torch.arange(10)[None] >= LENGTHS[:, None], 0.0), LENGTHS).frames)
    padded[1, 2] = math.nan
    with pytest.raises(ValueError, match="alpha_pred contains NaN or Inf within its valid frames"):
        rate_alpha(padded, LENGTHS, frame_period=40.0)
    with pytest.raises(ValueError, match="alpha contains NaN or Inf"):
        cif(x, padded, LENGTHS)


def test_integer_alpha_names_its_dtype():
    with pytest.raises(ValueError, match=r"alpha_pred must be a floating-point tensor, got a "
                                         r"tensor of dtype torch.int64.*\.float\(\)"):
        rate_alpha(torch.ones(2, 10, dtype=torch.long), LENGTHS, frame_period=40.0)
    with pytest.raises(ValueError, match="dtype torch.int32"):
        cif(torch.zeros(2, 10, 3), torch.ones(2, 10, dtype=torch.int32), LENGTHS)


def test_meta_tensors_get_a_clear_error(student):
    meta = dict(device="meta")
    with pytest.raises(ValueError, match="alpha_pred is on the meta device"):
        rate_alpha(torch.rand(2, 10, **meta), LENGTHS, frame_period=40.0)
    with pytest.raises(ValueError, match="lengths is on the meta device"):
        rate_alpha(torch.rand(2, 10), LENGTHS.to("meta"), frame_period=40.0)
    with pytest.raises(ValueError, match="x is on the meta device"):
        cif(torch.zeros(2, 10, 3, **meta), torch.rand(2, 10), LENGTHS)
    with pytest.raises(ValueError, match="wav is on the meta device"):
        student(torch.zeros(1, 16000, **meta), torch.tensor([16000], **meta))
    with pytest.raises(ValueError, match="wav is on the meta device"):
        check_waveform(torch.zeros(16000, **meta), 16000)
    with pytest.raises(ValueError, match="frame_period is on the meta device"):
        Rate(frame_period=torch.tensor(60.0, **meta))


def test_frame_period_as_a_0d_tensor_is_a_number(student):
    assert Rate(frame_period=torch.tensor(60.0)) == Rate(frame_period=60.0)
    assert Rate(lam=torch.tensor(0.5, dtype=torch.float64)).lam == 0.5
    alpha_pred = torch.rand(2, 10)
    assert torch.equal(rate_alpha(alpha_pred, LENGTHS, frame_period=torch.tensor(40.0)),
                       rate_alpha(alpha_pred, LENGTHS, frame_period=40.0))
    wav, lengths = 0.1 * torch.randn(1, 16000), torch.tensor([16000])
    with torch.no_grad():
        tensor_out = student(wav, lengths, frame_period=torch.tensor(60.0))
        float_out = student(wav, lengths, frame_period=60.0)
    assert torch.equal(tensor_out.last_hidden, float_out.last_hidden)
    with pytest.raises(ValueError, match="number of milliseconds"):
        Rate(frame_period=torch.tensor([60.0, 40.0]))  # one period, not a list


def test_half_precision_audio_on_the_cpu_runs_in_float32(student):
    wav, lengths = (0.1 * torch.randn(2, 16000)).half(), torch.tensor([16000, 9000])
    with torch.no_grad():
        half = student(wav, lengths, frame_period=40.0)
        full = student(wav.float(), lengths, frame_period=40.0)
    assert half.last_hidden.dtype == torch.float32
    assert torch.equal(half.lengths, full.lengths)
    assert torch.equal(half.last_hidden, full.last_hidden)
    assert check_waveform(torch.zeros(800, dtype=torch.bfloat16), 16000).dtype == torch.float32


class SyncCounter:
    """Counts the calls that copy a tensor's value to the host (a proxy for a GPU's host
    synchronisations that works on the CPU): bool(), item(), tolist(), int(), float(),
    numpy(), nonzero() and indexing with a boolean mask."""

    METHODS = ("__bool__", "item", "tolist", "__int__", "__float__", "__index__", "numpy",
               "nonzero")

    def __init__(self, monkeypatch):
        self.count = 0
        for name in self.METHODS:
            monkeypatch.setattr(torch.Tensor, name, self._counted(getattr(torch.Tensor, name)))
        getitem = torch.Tensor.__getitem__

        def masked_getitem(tensor, index):
            if torch.is_tensor(index) and index.dtype == torch.bool:
                self.count += 1
            return getitem(tensor, index)

        monkeypatch.setattr(torch.Tensor, "__getitem__", masked_getitem)

    def _counted(self, method):
        def counted(tensor, *args, **kwargs):
            self.count += 1
            return method(tensor, *args, **kwargs)
        return counted

    def __call__(self, fn, *args, **kwargs):
        before = self.count
        fn(*args, **kwargs)
        return self.count - before


def test_compression_host_synchronisations_per_call(student, monkeypatch):
    """rate_alpha and fixed_rate_alpha: none unchecked, one checked; cif: one (its output
    size, which carries its argument checks); the student's eval forward, with a predictor
    or at a fixed rate: two (waveform check + cif)."""
    alpha_pred, x = torch.rand(2, 10), torch.randn(2, 10, 3)
    alpha = rate_alpha(alpha_pred, LENGTHS, frame_period=40.0)
    wav, lengths = 0.1 * torch.randn(2, 16000), torch.tensor([16000, 9000])
    syncs = SyncCounter(monkeypatch)
    for rate in (dict(frame_period=40.0), dict(lam=0.5), dict(lam=1.5)):
        assert syncs(rate_alpha, alpha_pred, LENGTHS, checked=False, **rate) == 0
        assert syncs(rate_alpha, alpha_pred, LENGTHS, **rate) == 1
    assert syncs(cif, x, alpha, LENGTHS) == 1
    assert syncs(cif, x, alpha, LENGTHS, tail_threshold=0.5) == 1
    assert syncs(fixed_rate_alpha, LENGTHS, 10, 40.0, checked=False) == 0
    fixed = build_student("tiny", compression="fixed").eval()
    with torch.no_grad():
        assert syncs(student, wav, lengths, frame_period=60.0) == 2
        assert syncs(student, wav, lengths, lam=0.5) == 2
        assert syncs(fixed, wav, lengths, frame_period=60.0) == 2
    # The checks still run: a bad argument costs more transfers, but is refused.
    with pytest.raises(ValueError, match="longer than"):
        cif(x, alpha, torch.tensor([11, 6]))


# ----------------------------------------------------------------------------- checkpoints


def corrupt_tensor_bytes(checkpoint: Path, count: int = 64) -> None:
    """Overwrite ``count`` bytes in the middle of the largest tensor record, in place."""
    with zipfile.ZipFile(checkpoint) as archive:
        record = max(archive.infolist(), key=lambda info: info.file_size)
    data = bytearray(checkpoint.read_bytes())
    # The record's data follows its local header (30 bytes + name + extra field).
    name_len = int.from_bytes(data[record.header_offset + 26:record.header_offset + 28], "little")
    extra_len = int.from_bytes(data[record.header_offset + 28:record.header_offset + 30], "little")
    start = record.header_offset + 30 + name_len + extra_len + record.file_size // 2
    data[start:start + count] = np.random.default_rng(0).integers(0, 256, count, np.uint8).tobytes()
    checkpoint.write_bytes(bytes(data))


def test_damaged_checkpoint_is_refused_at_load(checkpoint):
    corrupt_tensor_bytes(checkpoint)
    torch.load(checkpoint, weights_only=True)  # torch itself reads it without complaint
    with pytest.raises(CheckpointError, match=r"is damaged: its record .*/data/\d+ fails its "
                                              r"checksum.*download or train it again"):
        load_student(checkpoint)


def test_nonfinite_weights_are_refused_by_every_load_path(student, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = build_student("tiny")
    bad.load_state_dict(student.state_dict())
    with torch.no_grad():
        bad.transformer.layers[0].feed_forward.output_dense.weight[0, 0] = math.inf
    checkpoint = save_student(bad, tmp_path / "exp" / "bad", preset="tiny")
    message = r"NaN or Inf \(transformer.layers.0.feed_forward.output_dense.weight\)"
    with pytest.raises(CheckpointError, match=message):
        load_student(checkpoint)
    with pytest.raises(CheckpointError, match=message):
        OFAFrontend(model=str(checkpoint), frame_period=60.0)
    with pytest.raises(CheckpointError, match=message):  # refused before it can be packed
        pack_ofa_ssl(checkpoint.parent / "config.yaml", checkpoint, tmp_path / "bad.zip")
    # A packed model whose unpacked weights went bad in the (default) cache.
    monkeypatch.setenv("HOME", str(tmp_path))
    good = save_student(student, tmp_path / "exp" / "good", preset="tiny")
    archive = pack_ofa_ssl(good.parent / "config.yaml", good, tmp_path / "good.zip")
    unpacked = resolve_ofa_checkpoint(str(archive))
    corrupt_tensor_bytes(unpacked)
    with pytest.raises(CheckpointError, match="is damaged"):
        OFAFrontend(model=str(archive), frame_period=60.0)


# ----------------------------------------------------------------------------- zoo


def test_cache_missing_its_unpacked_checkpoint_is_unpacked_again(checkpoint, tmp_path,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive = pack_ofa_ssl(checkpoint.parent / "config.yaml", checkpoint, tmp_path / "ofa.zip")
    first = resolve_ofa_checkpoint(str(archive), cachedir=tmp_path / "cache")
    first.unlink()
    again = resolve_ofa_checkpoint(str(archive), cachedir=tmp_path / "cache")
    assert again == first and again.is_file()
    assert load_student(again).config == load_student(checkpoint).config


def test_zoo_entry_whose_file_was_deleted_names_the_missing_file(checkpoint, tmp_path,
                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive = pack_ofa_ssl(checkpoint.parent / "config.yaml", checkpoint, tmp_path / "ofa.zip")
    zoo = tmp_path / "zoo"
    published = Path(publish(archive, str(zoo), name="tiny_ofa"))
    published.unlink()
    with pytest.raises(ZooError, match=r"'tiny_ofa' is listed in .*index.yaml but its file "
                                       r".*tiny_ofa.zip is missing.*publish the model again"):
        locate("tiny_ofa", zoos=[zoo])


# ----------------------------------------------------------------------------- environment


@pytest.mark.parametrize("value, message", [
    ("abc", r"ESPNET_OFA_FRAME_PERIOD='abc' is not a number"),
    ("150", r"ESPNET_OFA_FRAME_PERIOD/ESPNET_OFA_LAM: frame_period 150 ms is outside the range "
            r"this model was trained for, \[20, 90\] ms"),
])
def test_bad_frame_period_variable_is_an_error_even_where_ignored(checkpoint, monkeypatch,
                                                                  value, message):
    monkeypatch.setenv(ENV_FRAME_PERIOD, value)
    with pytest.raises(ValueError, match=message):  # a training build: the value is ignored
        OFAFrontend(model=str(checkpoint), frame_period=60.0)


# ----------------------------------------------------------------------------- data dirs

IDS = st.lists(st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=4),
               min_size=1, max_size=8, unique=True)
# Per-utterance files beyond the ones the repair always knew.
EXTRA_TABLES = ("utt2gender", "utt2age", "utt2dur", "utt2num_samples", "text.lc", "text_spk1")


@settings(max_examples=25, deadline=None)
@given(ids=IDS, data=st.data())
def test_fix_data_dir_filters_every_per_utterance_file_alike(tmp_path_factory, ids, data):
    """Whatever subset of utterances each file lists, after the repair every file lists
    exactly the kept ones, and the directory validates with all of them."""
    root = tmp_path_factory.mktemp("dd")
    tables = ("wav.scp", "text", "utt2spk", *EXTRA_TABLES)
    present = {}
    for name in tables:
        subset = data.draw(st.lists(st.sampled_from(ids), unique=True), label=name)
        present[name] = sorted(subset) or ids[:1]
        value = {"wav.scp": "a.wav", "utt2spk": "spk"}.get(name, "x y")
        write(root / name, "".join(f"{u} {value}\n" for u in present[name]))
    write(root / "spk2gender", "spk f\nother m\n")
    kept = set.intersection(*(set(v) for v in present.values()))
    if not kept:
        with pytest.raises(DataDirError, match="no utterance is present in every file"):
            fix_data_dir(root, backup=False)
        return
    report = fix_data_dir(root, backup=False)
    assert report.num_kept == len(kept)
    for name in tables:
        assert [x.key for x in read_table_lines(root / name)] == sorted(kept), name
    assert [x.key for x in read_table_lines(root / "spk2gender")] == ["spk"]
    validate_data_dir(root, optional=("text", "utt2spk", "spk2utt", *EXTRA_TABLES),
                      check_audio_paths=False)


def test_fix_data_dir_drops_a_segment_with_non_numeric_times(tmp_path):
    write(tmp_path / "wav.scp", "rec1 a.wav\n")
    write(tmp_path / "segments", "u1 rec1 0.0 1.0\nu2 rec1 1.0 abc\nu3 rec1 x 2\n")
    write(tmp_path / "text", "u1 one\nu2 two\nu3 three\n")
    write(tmp_path / "utt2gender", "u1 f\nu2 f\nu3 m\n")
    with pytest.raises(DataDirError, match=r"segments:2: malformed segment 'u2 rec1 1.0 abc' "
                                           r"\(start/end '1.0 abc' are not numbers"):
        validate_data_dir(tmp_path, check_audio_paths=False)
    report = fix_data_dir(tmp_path, backup=False)
    assert set(report.dropped) == {"u2", "u3"}
    assert "not numbers" in report.dropped["u2"]
    for name in ("segments", "text", "utt2gender"):
        assert [x.key for x in read_table_lines(tmp_path / name)] == ["u1"]
    validate_data_dir(tmp_path, optional=("text", "segments", "utt2gender"),
                      check_audio_paths=False)


NON_ASCII_SPACES = st.sampled_from(["\u00a0", "\u2007", "\u202f", "\u3000", "\u2009", "\u1680",
                                    "\u0085", "\u2028", "\u000b", "\u000c"])


@settings(max_examples=30, deadline=None)
@given(head=st.text(string.ascii_letters, min_size=1, max_size=5), space=NON_ASCII_SPACES,
       tail=st.text(string.ascii_letters, min_size=1, max_size=5))
def test_ids_are_never_split_at_a_non_ascii_space(tmp_path_factory, head, space, tail):
    root = tmp_path_factory.mktemp("dd")
    write(root / "wav.scp", f"{head}{space}{tail} a.wav\nzz b.wav\n")
    with pytest.raises(DataDirError, match=rf"wav.scp:1: id .* contains U\+{ord(space):04X}"):
        validate_data_dir(root, check_audio_paths=False)
    report = fix_data_dir(root, backup=False)  # the line is dropped, not split
    assert report.num_kept == 1
    assert [x.key for x in read_table_lines(root / "wav.scp")] == ["zz"]


# ----------------------------------------------------------------------------- recipes


def test_bpe_vocabulary_smaller_than_the_characters(tmp_path):
    """31 distinct characters do not fit 30 pieces: a smoke run sizes the vocabulary from the
    data; a real run names the option to raise."""
    chars = string.ascii_lowercase + ".,?!'"  # 31 characters
    text = write(tmp_path / "text", "".join(f"u{i} {chars[i:] + chars[:i]}\n" for i in range(31)))
    with pytest.raises(ValueError, match=r"--src_nbpe 30 is too small.*run with --src_nbpe 3\d"):
        make_token_list([text], tmp_path / "real" / "tokens.txt", "bpe", nbpe=30,
                        nbpe_option="--src_nbpe")
    tokens = make_token_list([text], tmp_path / "smoke" / "tokens.txt", "bpe", nbpe=30,
                             nbpe_fit_data=True).read_text(encoding="utf-8").split()
    assert set(chars) <= {t.lstrip("\u2581") for t in tokens}
    assert not list((tmp_path / "smoke").glob("*.train.txt"))


def test_a_log_mel_baseline_is_packed_as_a_plain_espnet_model(tmp_path, monkeypatch):
    """Stage 14 packs every model a recipe trained: the log-mel baseline of fsdd asr1 as an
    ordinary ESPnet model that ESPnet's Speech2Text loads and runs; its weights are checked
    at load like an OFA model's."""
    from espnet2.bin.asr_inference import Speech2Text
    from espnet2.tasks.asr import ASRTask

    from espnet_ofa.zoo.archive import unpack_archive

    monkeypatch.chdir(tmp_path)
    recipe_conf = Path(__file__).parents[1] / "egs2" / "fsdd" / "asr1" / "conf"
    conf = yaml.safe_load((recipe_conf / "train_asr_logmel.yaml").read_text(encoding="utf-8"))
    exp = tmp_path / "exp" / "asr_logmel"
    exp.mkdir(parents=True)
    write(tmp_path / "tokens.txt", "<blank>\n<unk>\nzero\none\n<sos/eos>\n")
    conf.update(token_list="tokens.txt", input_size=None, init=None, ctc_conf={},
                normalize=None, model="espnet", joint_net_conf=None, use_preprocessor=False,
                token_type="word", bpemodel=None, preencoder=None, postencoder=None,
                decoder=None, specaug=None, required=["output_dir", "token_list"],
                train_data_path_and_name_and_type=[["dump/train/wav.scp", "speech", "sound"]])
    write(exp / "config.yaml", yaml.safe_dump(conf))
    torch.manual_seed(0)
    model, _ = ASRTask.build_model_from_file(exp / "config.yaml", None)
    torch.save(model.state_dict(), exp / "valid.loss.best.pth")

    zip_path = pack_downstream("asr", exp / "config.yaml", exp / "valid.loss.best.pth",
                               exp / "packed" / "model.zip")
    files = unpack_archive(zip_path, tmp_path / "cache")
    card = zipfile.ZipFile(zip_path).read("README.md").decode()
    assert "frontend**: default (a baseline without OFA" in card
    speech2text = Speech2Text(asr_train_config=files["asr_train_config"],
                              asr_model_file=files["asr_model_file"], ctc_weight=1.0,
                              beam_size=1, lm_weight=0.0)
    hyps = speech2text(0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32))
    assert len(hyps) == 1 and all(t in ("zero", "one") for t in hyps[0][0].split())

    state = model.state_dict()
    name = next(k for k in state if k.startswith("encoder.") and k.endswith("weight"))
    state[name].view(-1)[0] = math.nan
    torch.save(state, exp / "valid.loss.best.pth")
    with pytest.raises(CheckpointError, match=rf"valid.loss.best.pth has weights that are NaN "
                                              rf"or Inf \({name}\)"):
        ASRTask.build_model_from_file(exp / "config.yaml", exp / "valid.loss.best.pth")
    assert os.path.isfile(files["asr_model_file"])
