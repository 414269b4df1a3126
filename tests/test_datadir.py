"""Kaldi/ESPnet data directories and audio loading: every error names the file, line and fix."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from espnet_ofa.data import (
    DataDirError,
    check_waveform,
    check_waveform_batch,
    fix_data_dir,
    load_audio,
    num_frames,
    read_kaldi_table,
    validate_data_dir,
    write_kaldi_table,
)



def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def make_wav(path: Path, seconds: float = 0.1, rate: int = 16000, channels: int = 1) -> Path:
    n = int(seconds * rate)
    data = 0.1 * np.sin(np.arange(n) / 10.0)
    if channels > 1:
        data = np.stack([data] * channels, axis=1)
    soundfile.write(path, data, rate)
    return path


@pytest.fixture
def good_dir(tmp_path):
    """A valid three-utterance directory with real (tiny) wav files."""
    d = tmp_path / "data"
    d.mkdir()
    wavs = {u: make_wav(tmp_path / f"{u}.wav") for u in ("spkA-u1", "spkA-u2", "spkB-u1")}
    write(d / "wav.scp", "".join(f"{u} {p}\n" for u, p in sorted(wavs.items())))
    write(d / "text", "spkA-u1 ONE\nspkA-u2 TWO THREE\nspkB-u1 FOUR\n")
    write(d / "utt2spk", "spkA-u1 spkA\nspkA-u2 spkA\nspkB-u1 spkB\n")
    write(d / "spk2utt", "spkA spkA-u1 spkA-u2\nspkB spkB-u1\n")
    return d


def expect_error(d: Path, pattern: str, **kwargs) -> str:
    with pytest.raises(DataDirError) as info:
        validate_data_dir(d, **kwargs)
    msg = str(info.value)
    assert re.search(pattern, msg), msg
    return msg


# ------------------------------------------------------------------------------- tables


def test_read_write_roundtrip_sorted_atomic(tmp_path):
    path = tmp_path / "sub" / "text"
    # Upper case sorts before lower case in C-locale order; inner spaces are kept.
    write_kaldi_table(path, {"b": "two  words", "a": "x", "B": "y"})
    assert path.read_text() == "B y\na x\nb two  words\n"
    assert list(read_kaldi_table(path).items()) == [("B", "y"), ("a", "x"), ("b", "two  words")]
    # No temp file is left behind next to the table.
    assert sorted(p.name for p in path.parent.iterdir()) == ["text"]
    with pytest.raises(ValueError, match="no spaces"):
        write_kaldi_table(path, {"a b": "x"})


def test_rewriting_the_same_table_keeps_its_time(tmp_path):
    """A rerun of a data stage must not make what was built from its tables look stale
    (stage 10's statistics are kept while their sources are older than them)."""
    path = tmp_path / "text"
    write_kaldi_table(path, {"a": "x", "b": "y"})
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    write_kaldi_table(path, {"b": "y", "a": "x"})  # the same lines
    assert path.stat().st_mtime_ns == 1_000_000_000
    write_kaldi_table(path, {"a": "x", "b": "z"})  # changed: written
    assert path.read_text() == "a x\nb z\n" and path.stat().st_mtime_ns > 1_000_000_000
    link = tmp_path / "link"
    link.symlink_to(path)
    write_kaldi_table(link, {"a": "x", "b": "z"})  # a link is replaced by a file, as before
    assert not link.is_symlink() and link.read_text() == path.read_text()


def test_read_handles_crlf_and_tabs(tmp_path):
    path = write(tmp_path / "utt2spk", "u1\tspk1\r\nu2  spk2 \r\n")
    assert read_kaldi_table(path) == {"u1": "spk1", "u2": "spk2"}


# ------------------------------------------------------------------------------- validation


def test_valid_dir_summary(good_dir):
    summary = validate_data_dir(good_dir, sample_rate=16000)
    assert summary.num_utterances == 3
    assert summary.num_speakers == 2
    assert summary.files == ["wav.scp", "text", "utt2spk", "spk2utt"]
    assert "3 utterances" in str(summary)


def test_missing_dir_and_required_file(tmp_path, good_dir):
    expect_error(tmp_path / "nope", r"nope: data directory not found")
    os.remove(good_dir / "wav.scp")
    expect_error(good_dir, r"wav\.scp: required file not found\. Create it")


def test_empty_file(good_dir):
    write(good_dir / "utt2spk", "")
    expect_error(good_dir, r"utt2spk: file is empty")


def test_malformed_line_no_value(good_dir):
    write(good_dir / "utt2spk", "spkA-u1 spkA\nspkA-u2\nspkB-u1 spkB\n")
    expect_error(good_dir, r"utt2spk:2: malformed line 'spkA-u2': an id with no value")


def test_blank_line(good_dir):
    write(good_dir / "utt2spk", "spkA-u1 spkA\n\nspkA-u2 spkA\nspkB-u1 spkB\n")
    expect_error(good_dir, r"utt2spk:2: blank line .*Delete the line")


def test_duplicate_ids(good_dir):
    write(good_dir / "text", "spkA-u1 ONE\nspkA-u1 AGAIN\nspkA-u2 TWO\nspkB-u1 FOUR\n")
    expect_error(good_dir, r"text:2: duplicate id 'spkA-u1' \(first on line 1\)")


def test_unsorted_ids_c_locale(good_dir):
    write(good_dir / "text", "spkA-u2 TWO\nspkA-u1 ONE\nspkB-u1 FOUR\n")
    msg = expect_error(good_dir, r"text:2: ids are not sorted: 'spkA-u1' comes after 'spkA-u2'")
    assert "LC_ALL=C sort" in msg and "fix_data_dir" in msg


def test_ids_not_matching_wav_scp(good_dir):
    write(good_dir / "text", "spkA-u1 ONE\nspkA-u2 TWO\nspkC-u9 NINE\n")
    expect_error(good_dir, r"text:3: id 'spkC-u9' is not in wav\.scp")
    write(good_dir / "text", "spkA-u1 ONE\nspkA-u2 TWO\n")
    expect_error(good_dir, r"text: 1 id\(s\) of wav\.scp are missing here, e\.g\. 'spkB-u1'")


def test_missing_wav_path(good_dir):
    os.remove(good_dir.parent / "spkA-u2.wav")
    expect_error(good_dir, r"wav\.scp:2: audio file '.*spkA-u2\.wav' of 'spkA-u2' does not exist")


def test_empty_transcript(good_dir):
    write(good_dir / "text", "spkA-u1 ONE\nspkA-u2   \nspkB-u1 FOUR\n")
    expect_error(good_dir, r"text:2: empty transcript for utterance 'spkA-u2'")


def test_spk2utt_inconsistent(good_dir):
    write(good_dir / "spk2utt", "spkA spkA-u1\nspkB spkA-u2 spkB-u1\n")
    expect_error(good_dir, r"spk2utt:2: utterance 'spkA-u2' of speaker 'spkB' does not match utt2spk")


def test_wrong_sample_rate(good_dir):
    make_wav(good_dir.parent / "spkA-u2.wav", rate=8000)
    expect_error(good_dir, r"wav\.scp:2: .* is 8000 Hz but 16000 Hz is expected\. Resample", sample_rate=16000)


def test_segments(tmp_path):
    d = tmp_path / "seg"
    d.mkdir()
    rec = make_wav(tmp_path / "rec.wav", seconds=1.0)
    write(d / "wav.scp", f"rec1 {rec}\n")
    write(d / "segments", "rec1-a rec1 0.0 0.5\nrec1-b rec1 0.5 -1\n")
    write(d / "text", "rec1-a A\nrec1-b B\n")
    assert validate_data_dir(d).num_utterances == 2
    write(d / "segments", "rec1-a rec1 0.0 0.5\nrec1-b rec2 0.5 -1\n")
    expect_error(d, r"segments:2: recording 'rec2' of segment 'rec1-b' is not in wav\.scp")
    write(d / "segments", "rec1-a rec1 0.6 0.5\nrec1-b rec1 0.5 -1\n")
    expect_error(d, r"segments:1: malformed segment")


# ------------------------------------------------------------------------------- repair


def test_fix_data_dir_messy(tmp_path):
    d = tmp_path / "messy"
    d.mkdir()
    wavs = {u: make_wav(tmp_path / f"{u}.wav") for u in ("s1-a", "s1-b", "s2-a", "s2-b", "s2-c")}
    # Unsorted, a duplicate, an utterance missing from text, one only in text, an empty
    # transcript, a blank line, and a stale spk2utt.
    write(d / "wav.scp", "".join(f"{u} {wavs[u]}\n" for u in ("s2-b", "s1-a", "s1-b", "s2-a", "s2-c")))
    write(d / "text", "s1-b B\ns1-a A\ns1-a DUPLICATE\n\ns2-a \ns2-b BB\nzz-x ORPHAN\n")
    write(d / "utt2spk", "s1-a s1\ns1-b s1\ns2-a s2\ns2-b s2\ns2-c s2\nzz-x zz\n")
    write(d / "spk2utt", "s2 s2-a\ns1 s1-a\n")

    report = fix_data_dir(d)

    assert report.num_kept == 3
    assert report.dropped["s2-c"] == "not in text"
    assert report.dropped["zz-x"] == "not in wav.scp"
    assert report.dropped["s2-a"].startswith("empty transcript")
    assert any("duplicate id 's1-a'" in x for x in report.dropped_lines)
    assert any("blank line" in x for x in report.dropped_lines)
    assert "kept 3 utterances, dropped 3" in str(report)

    assert read_kaldi_table(d / "text") == {"s1-a": "A", "s1-b": "B", "s2-b": "BB"}
    assert (d / "spk2utt").read_text() == "s1 s1-a s1-b\ns2 s2-b\n"
    assert list(read_kaldi_table(d / "wav.scp")) == ["s1-a", "s1-b", "s2-b"]
    # The originals are kept, and the result passes validation.
    assert "ORPHAN" in (d / ".backup" / "text").read_text()
    summary = validate_data_dir(d)
    assert summary.num_utterances == 3 and summary.num_speakers == 2


def test_fix_data_dir_missing_audio_and_segments(tmp_path):
    d = tmp_path / "seg"
    d.mkdir()
    rec = make_wav(tmp_path / "rec.wav", seconds=1.0)
    write(d / "wav.scp", f"rec1 {rec}\nrec2 {tmp_path / 'gone.wav'}\nrec3 {rec}\n")
    write(d / "segments", "r1-a rec1 0 0.5\nr2-a rec2 0 0.5\nr9-a rec9 0 1\n")
    write(d / "utt2spk", "r1-a s\nr2-a s\nr9-a s\n")
    report = fix_data_dir(d, drop_missing_audio=True)
    assert report.dropped == {"r9-a": "its recording is not in wav.scp", "r2-a": "audio file not found"}
    assert list(read_kaldi_table(d / "wav.scp")) == ["rec1"]  # unused recordings go too
    assert validate_data_dir(d).num_utterances == 1


def test_fix_data_dir_nothing_left(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    write(d / "wav.scp", "a x.wav\n")
    write(d / "text", "b B\n")
    with pytest.raises(DataDirError, match="no utterance is present in every file"):
        fix_data_dir(d)


# ------------------------------------------------------------------------------- audio


def test_load_audio_fsdd_resamples_to_16k(fsdd_recordings):
    path = fsdd_recordings / "0_george_0.wav"
    info = soundfile.info(path)
    assert info.samplerate == 8000
    wav, orig_sr = load_audio(path)
    assert orig_sr == 8000
    assert wav.dtype == torch.float32 and wav.dim() == 1
    assert abs(wav.numel() - 2 * info.frames) <= 1
    check_waveform(wav, 16000)  # passes once resampled
    # Without resampling, the check explains what to do.
    raw, sr = load_audio(str(path), target_sr=None)
    assert raw.numel() == info.frames and sr == 8000
    with pytest.raises(ValueError, match=r"8000 Hz .* Resample to 16 kHz, e\.g\."):
        check_waveform(raw, sr)


def test_load_audio_segment_pipe_and_stereo(tmp_path):
    path = make_wav(tmp_path / "a.wav", seconds=1.0)
    full, _ = load_audio(path)
    part, _ = load_audio(path, segment=(0.25, 0.5))
    assert part.numel() == 4000
    torch.testing.assert_close(part, full[4000:8000])
    piped, _ = load_audio(f"cat {path} |")
    torch.testing.assert_close(piped, full)
    stereo = make_wav(tmp_path / "s.wav", channels=2)
    with pytest.raises(ValueError, match="2 channels; expected mono. Mix down to mono"):
        load_audio(stereo)
    assert load_audio(stereo, mix_to_mono=True)[0].dim() == 1


def test_check_waveform_errors():
    ok = torch.zeros(800)
    check_waveform(ok, 16000)
    check_waveform(ok[None], 16000)  # (1, N) is mono
    with pytest.raises(ValueError, match=r"2 channels, but mono is needed\. Mix down to mono"):
        check_waveform(torch.zeros(2, 800), 16000)
    with pytest.raises(ValueError, match=r"2 channels"):
        check_waveform(torch.zeros(800, 2), 16000)
    with pytest.raises(ValueError, match="empty"):
        check_waveform(torch.zeros(0), 16000)
    with pytest.raises(ValueError, match=r"44100 Hz .*Resample to 16 kHz, e\.g\. torchaudio"):
        check_waveform(ok, 44100)
    with pytest.raises(ValueError, match=r"100 samples \(6\.25 ms\); at least 400 samples \(25 ms\)"):
        check_waveform(torch.zeros(100), 16000)
    bad = ok.clone()
    bad[3] = float("nan")
    with pytest.raises(ValueError, match="NaN/Inf"):
        check_waveform(bad, 16000)
    with pytest.raises(ValueError, match="floating point"):
        check_waveform(torch.zeros(800, dtype=torch.int16), 16000)


def test_check_waveform_batch_errors():
    wav = torch.zeros(2, 1000)
    wav[1, 900:] = float("inf")  # padding: ignored
    check_waveform_batch(wav, torch.tensor([1000, 900]))
    with pytest.raises(ValueError, match=r"wav_lengths\[1\] = 1200 exceeds the padded length 1000"):
        check_waveform_batch(wav, torch.tensor([1000, 1200]))
    with pytest.raises(ValueError, match=r"utterance 1 is empty"):
        check_waveform_batch(wav, torch.tensor([1000, 0]))
    with pytest.raises(ValueError, match=r"utterance 0 has 300 samples \(18\.75 ms\)"):
        check_waveform_batch(wav, torch.tensor([300, 900]))
    with pytest.raises(ValueError, match=r"utterance 1 contains 1 NaN/Inf"):
        check_waveform_batch(wav, torch.tensor([1000, 901]))
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        check_waveform_batch(torch.zeros(2, 2, 1000), torch.tensor([1000, 1000]))
    with pytest.raises(ValueError, match="integers"):
        check_waveform_batch(wav, torch.tensor([1000.0, 900.0]))


def test_num_frames_matches_cnn_formula():
    assert num_frames(399) == 0
    assert num_frames(400) == 1
    assert num_frames(16000) == (16000 - 400) // 320 + 1 == 49
