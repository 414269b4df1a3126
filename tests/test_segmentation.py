"""Pseudo boundaries: conventions, exact values, DP segmentation, and the resumable CLI."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_ofa.segmentation import (
    assign_units,
    check_boundaries,
    dp_smooth,
    fit_kmeans,
    merge_short_segments,
    read_boundaries,
    segment_ids,
    units_to_boundaries,
)



# ------------------------------------------------------------------------------- boundaries


def test_units_to_boundaries_exact():
    assert units_to_boundaries([5, 5, 1, 7, 7, 7]).tolist() == [2, 3, 6]
    assert units_to_boundaries([3]).tolist() == [1]
    assert units_to_boundaries([4, 4, 4]).tolist() == [3]
    assert units_to_boundaries([]).tolist() == []
    # Every frame differs: one segment per frame, the last boundary is T.
    assert units_to_boundaries([0, 1, 2, 3]).tolist() == [1, 2, 3, 4]


def test_min_duration_merging_exact():
    # Runs of lengths [2, 1, 3, 1]. The shortest short segment (earliest on ties: index 1)
    # joins its shorter neighbour (left, length 2); then the last one joins the left one.
    assert units_to_boundaries([0, 0, 1, 2, 2, 2, 3], min_duration=2).tolist() == [3, 7]
    # Lengths [3, 1, 2]: the 1-frame segment joins the shorter neighbour, on the right.
    assert merge_short_segments([3, 4, 6], 2).tolist() == [3, 6]
    # A short first segment has only a right neighbour.
    assert merge_short_segments([1, 4, 8], 2).tolist() == [4, 8]
    # Lengths [1, 1, 1, 1, 4] with min 3: the flickers merge among themselves first.
    assert merge_short_segments([1, 2, 3, 4, 8], 3).tolist() == [4, 8]
    # Too short overall: one segment is left.
    assert merge_short_segments([1, 2], 5).tolist() == [2]
    assert merge_short_segments([2, 5], 1).tolist() == [2, 5]


def test_boundary_checks():
    assert segment_ids([2, 3, 6]).tolist() == [0, 0, 1, 2, 2, 2]
    with pytest.raises(ValueError, match="must equal the number of frames"):
        check_boundaries([2, 3, 6], 7)
    with pytest.raises(ValueError, match="strictly increasing"):
        check_boundaries([2, 2, 6])
    with pytest.raises(ValueError, match=">= 1"):
        check_boundaries([0, 6])


# ------------------------------------------------------------------------------- DP


def piecewise_signal(true_b, dim=6, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.diff(true_b, prepend=0)
    means = rng.normal(scale=2.0, size=(len(lengths), dim))
    x = np.repeat(means, lengths, axis=0)
    return x + rng.normal(scale=noise, size=x.shape)


def test_dp_smooth_recovers_piecewise_constant_boundaries():
    true_b = np.array([12, 20, 47, 51, 90, 120])
    x = piecewise_signal(true_b)
    assert dp_smooth(x, n_segments=len(true_b)).tolist() == true_b.tolist()
    # Penalty mode finds the count itself: noise costs ~dim * noise^2 per frame, far below
    # the error of a missed change, and a penalty of ~dim keeps noise from being split.
    assert dp_smooth(x, penalty=6.0).tolist() == true_b.tolist()
    # Shifting the features does not move the boundaries (the DP centres them).
    assert dp_smooth(x + 1e4, n_segments=len(true_b)).tolist() == true_b.tolist()


def sse(x, b):
    starts = np.concatenate([[0], b[:-1]])
    return sum(((x[s:e] - x[s:e].mean(0)) ** 2).sum() for s, e in zip(starts, b))


def test_dp_smooth_is_optimal_against_brute_force():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 2))
    for k, min_dur in [(1, 1), (3, 1), (3, 2), (4, 2)]:
        best = min(
            (sse(x, np.array([*cuts, 9])), [*cuts, 9])
            for cuts in itertools.combinations(range(1, 9), k - 1)
            if np.all(np.diff([0, *cuts, 9]) >= min_dur)
        )
        got = dp_smooth(x, n_segments=k, min_duration=min_dur)
        assert np.isclose(sse(x, got), best[0]), (k, min_dur, got, best)
        assert len(got) == k and np.all(np.diff(got, prepend=0) >= min_dur)


def test_dp_smooth_errors_and_edge_cases():
    x = np.zeros((5, 2))
    assert dp_smooth(x, n_segments=1).tolist() == [5]
    assert dp_smooth(x, penalty=1.0, min_duration=10).tolist() == [5]
    with pytest.raises(ValueError, match="exactly one"):
        dp_smooth(x)
    with pytest.raises(ValueError, match="cannot cut 5 frames into 3 segments"):
        dp_smooth(x, n_segments=3, min_duration=2)


# ------------------------------------------------------------------------------- k-means


def test_fit_kmeans_and_assign():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    feats = [centers[rng.integers(0, 3, 50)] + rng.normal(scale=0.1, size=(50, 2)) for _ in range(4)]
    c = fit_kmeans(feats, 3, seed=0)
    assert c.shape == (3, 2) and c.dtype == np.float32
    # Each true centre is found (up to order).
    assert np.allclose(np.sort(c[:, 0] + 2 * c[:, 1]), [0, 10, 20], atol=0.2)
    units = assign_units(centers, c)
    assert len(set(units.tolist())) == 3
    np.testing.assert_array_equal(fit_kmeans(feats, 3, seed=0), c)  # deterministic
    with pytest.raises(ValueError, match="only 4 frames for 5 clusters"):
        fit_kmeans([np.zeros((4, 2))], 5)
    with pytest.raises(ValueError, match="share D"):
        assign_units(np.zeros((3, 4)), c)


def test_saved_centroids_round_trip_with_the_usual_file_mode(tmp_path):
    """Other jobs (segmenting dev/test, another user's run) read the units: 0644 under
    umask 022, as every file a recipe writes, not a temporary file's 0600."""
    import os
    import stat

    from espnet_ofa.segmentation.kmeans import load_centroids, save_centroids

    c = np.arange(6, dtype=np.float64).reshape(3, 2)
    old = os.umask(0o022)
    try:
        save_centroids(tmp_path / "units" / "km.npy", c)
    finally:
        os.umask(old)
    path = tmp_path / "units" / "km.npy"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    loaded = load_centroids(path)
    assert loaded.dtype == np.float32 and loaded.tolist() == c.tolist()
    assert [p.name for p in path.parent.iterdir()] == ["km.npy"]  # no temporary left


def test_teacher_feature_is_lazy():
    """The teacher path must not import espnet_ofa.teachers until it is used."""
    from espnet_ofa.segmentation.features import TeacherFeatures
    from espnet_ofa.segmentation.pipeline import SegmentConfig, make_feature_fn

    fn = make_feature_fn(SegmentConfig(feature="teacher", teacher="some/source", teacher_layer=3))
    assert isinstance(fn, TeacherFeatures) and fn.layer == 3 and fn._teacher is None
    with pytest.raises(ValueError, match="needs a teacher source"):
        SegmentConfig(feature="teacher")


# ------------------------------------------------------------------------------- CLI


def build_fsdd_dir(root: Path, names, fsdd: Path) -> Path:
    """A data dir of FSDD takes resampled to 16 kHz (the wavs live in tmp, not the repo)."""
    from espnet_ofa.data import load_audio, write_kaldi_table

    wav_dir = root / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    scp = {}
    for name in names:
        wav, _ = load_audio(fsdd / f"{name}.wav", target_sr=16000)
        path = wav_dir / f"{name}.wav"
        soundfile.write(path, wav.numpy(), 16000)
        scp[name] = str(path)
    write_kaldi_table(data / "wav.scp", scp)
    return data


FSDD_NAMES = [f"{d}_{spk}_{i}" for d, spk, i in [
    (0, "george", 0), (1, "jackson", 1), (2, "nicolas", 2), (3, "theo", 3), (4, "yweweler", 4),
    (5, "george", 5), (6, "jackson", 6), (7, "nicolas", 7), (8, "theo", 8), (9, "yweweler", 9),
]]
CLI_ARGS = ["--feature", "mfcc", "--n_clusters", "8", "--min_duration", "2", "--seed", "0",
            "--no_progress", "--log_level", "WARNING"]


@pytest.fixture(scope="module")
def fsdd_dirs(tmp_path_factory, fsdd_recordings):
    root = tmp_path_factory.mktemp("fsdd")
    full = build_fsdd_dir(root / "full", FSDD_NAMES, fsdd_recordings)
    half = build_fsdd_dir(root / "half", FSDD_NAMES[::2], fsdd_recordings)
    return full, half


def frames_of(wav_path) -> int:
    return (soundfile.info(wav_path).frames - 400) // 320 + 1


@pytest.mark.parametrize("dp", [False, True])
def test_cli_writes_one_line_per_utterance(fsdd_dirs, tmp_path, dp):
    from espnet_ofa.bin.segment import main
    from espnet_ofa.data import read_kaldi_table

    full, _ = fsdd_dirs
    out = tmp_path / "seg" / "boundaries"
    args = ["--data_dir", str(full), "--out", str(out), *CLI_ARGS] + (["--dp_smooth"] if dp else [])
    assert main(args) == 0
    bounds = read_boundaries(out)
    scp = read_kaldi_table(full / "wav.scp")
    assert sorted(bounds) == sorted(scp)
    for utt, b in bounds.items():
        t = frames_of(scp[utt])
        assert 1 <= b[0] and b[-1] == t and np.all(np.diff(b) >= 2), (utt, b, t)
        assert 1 < len(b) < t  # some segmentation happened, coarser than frames
    assert (out.parent / "boundaries.kmeans.npy").is_file()
    meta = json.loads((out.parent / "boundaries.meta.json").read_text())
    assert meta["n_clusters"] == 8 and meta["dp_smooth"] is dp
    assert not (out.parent / "boundaries.partial").exists()


def test_cli_resumes_after_interruption(fsdd_dirs, tmp_path, monkeypatch):
    """A run killed after 5 utterances, then rerun, equals one uninterrupted run."""
    from espnet_ofa.segmentation import pipeline
    from espnet_ofa.segmentation.features import mfcc_features

    full, _ = fsdd_dirs
    config = pipeline.SegmentConfig(n_clusters=8, min_duration=2, seed=0)
    ref = tmp_path / "ref" / "boundaries"
    pipeline.segment_data_dir(full, ref, config, progress=False)

    calls = []

    def dying_features(wav):
        # 10 calls fit k-means (every utterance is sampled), the next 5 segment; the 16th
        # call stands for the kill.
        calls.append(1)
        if len(calls) == 16:
            raise KeyboardInterrupt
        return mfcc_features(wav)

    out = tmp_path / "run" / "boundaries"
    with pytest.raises(KeyboardInterrupt):
        pipeline.segment_data_dir(full, out, config, feature_fn=dying_features, progress=False,
                                  flush_every=1)
    partial = out.parent / "boundaries.partial"
    assert not out.exists() and len(partial.read_text().splitlines()) == 5
    # A kill can also cut the last line short: it must be recomputed, not trusted.
    partial.write_text(partial.read_text() + "9_yweweler_9 3 7")

    report = pipeline.segment_data_dir(full, out, config, progress=False)
    assert len(report.reused) == 5 and len(report.computed) == 5 and not report.kmeans_fitted
    assert out.read_text() == ref.read_text()
    assert not partial.exists()


def test_cli_subset_then_full_dir_computes_only_missing(fsdd_dirs, tmp_path):
    """Run on 5 utterances, then on all 10: only the 5 new ones are computed, with the
    same clusters, giving what one full run with those clusters gives."""
    from espnet_ofa.bin.segment import main
    from espnet_ofa.segmentation import pipeline

    full, half = fsdd_dirs
    out = tmp_path / "run" / "boundaries"
    assert main(["--data_dir", str(half), "--out", str(out), *CLI_ARGS]) == 0
    first = read_boundaries(out)
    assert len(first) == 5

    config = pipeline.SegmentConfig(n_clusters=8, min_duration=2, seed=0)
    report = pipeline.segment_data_dir(full, out, config, progress=False)
    assert sorted(report.reused) == sorted(first)
    assert sorted(report.computed) == sorted(set(FSDD_NAMES) - set(first))

    ref = tmp_path / "ref" / "boundaries"
    kmeans = out.parent / "boundaries.kmeans.npy"
    assert main(["--data_dir", str(full), "--out", str(ref), "--kmeans", str(kmeans), *CLI_ARGS]) == 0
    assert out.read_text() == ref.read_text()

    # Other settings on an existing output are refused instead of mixing boundaries.
    with pytest.raises(ValueError, match=r"other settings \(min_duration: 2 -> 3\)"):
        pipeline.segment_data_dir(full, out, pipeline.SegmentConfig(n_clusters=8, min_duration=3),
                                  progress=False)


def fake_espnet_teacher(exp: Path, weights: bytes) -> Path:
    """The files of an ESPnet teacher experiment that its fingerprint reads (no model)."""
    exp.mkdir(parents=True, exist_ok=True)
    (exp / "config.yaml").write_text("encoder: hubert_pretrain\n")
    (exp / "8epoch.pth").write_bytes(weights)
    if not (exp / "valid.loss.best.pth").is_symlink():
        (exp / "valid.loss.best.pth").symlink_to("8epoch.pth")
    return exp


def test_rerun_keeps_the_same_teachers_boundaries_and_restarts_for_another(fsdd_dirs, tmp_path):
    """ssl.sh's stage 8 on a rerun (``on_change="restart"``): the same teacher weights and
    settings keep every boundary (nothing computed, no k-means fitted); a teacher retrained
    under the same folder, other settings or other given units start over and give what a
    fresh run gives; without restart the change is refused, named."""
    from dataclasses import replace

    from espnet_ofa.segmentation import pipeline
    from espnet_ofa.segmentation.features import mfcc_features
    from espnet_ofa.teachers import weights_fingerprint

    full, half = fsdd_dirs
    teacher = fake_espnet_teacher(tmp_path / "exp/hubert", b"weights of epoch 8")
    config = pipeline.SegmentConfig(feature="teacher", teacher=str(teacher), n_clusters=8)

    def run(config, out, on_change="restart", kmeans=None, data=full):
        # MFCCs stand in for the teacher's features: under test is what the run records.
        return pipeline.segment_data_dir(data, out, config, feature_fn=mfcc_features,
                                         kmeans=kmeans, progress=False, on_change=on_change)

    out = tmp_path / "seg/boundaries"
    assert len(run(config, out).computed) == 10
    table = out.read_text()
    # ESPnet's rerun of a finished training rewrites its log and averaged models only.
    (teacher / "train.log").write_text("The training was finished at 8 epochs\n")
    (teacher / "valid.loss.ave.pth").write_bytes(b"averaged again")
    again = run(config, out)
    assert not again.computed and len(again.reused) == 10 and not again.kmeans_fitted
    assert out.read_text() == table

    (teacher / "8epoch.pth").write_bytes(b"weights of a retrained teacher")
    with pytest.raises(ValueError, match=r"other settings \(teacher_weights: '[0-9a-f]+' -> "):
        run(config, out, on_change="error")
    retrained = run(config, out)
    assert len(retrained.computed) == 10 and not retrained.reused and retrained.kmeans_fitted
    meta = json.loads((out.parent / "boundaries.meta.json").read_text())
    assert meta["teacher_weights"] == weights_fingerprint(teacher)
    units8 = tmp_path / "units8.npy"
    units8.write_bytes((out.parent / "boundaries.kmeans.npy").read_bytes())

    more = replace(config, n_clusters=12)
    assert run(more, out).kmeans_fitted
    fresh = tmp_path / "fresh/boundaries"
    run(more, fresh)
    assert out.read_text() == fresh.read_text() != table

    # A part segmented with the units of the whole set (as parallel jobs are) follows them.
    part = tmp_path / "part/boundaries"
    run(config, part, kmeans=units8, data=half)
    redone = run(config, part, kmeans=tmp_path / "fresh/boundaries.kmeans.npy", data=half)
    assert len(redone.computed) == 5 and not redone.reused
    with pytest.raises(ValueError, match="on_change must be one of"):
        run(config, part, on_change="keep")


def test_fit_only_then_parallel_parts_equal_one_run(fsdd_dirs, tmp_path):
    """--fit_only writes the units alone; the data dir segmented in two parts with them
    (as ssl.sh's parallel jobs do) gives one run's boundaries exactly."""
    from espnet_ofa.bin.segment import main
    from espnet_ofa.data import read_kaldi_table, write_kaldi_table

    full, _ = fsdd_dirs
    ref = tmp_path / "ref" / "boundaries"
    assert main(["--data_dir", str(full), "--out", str(ref), *CLI_ARGS]) == 0

    out = tmp_path / "run" / "boundaries"
    assert main(["--data_dir", str(full), "--out", str(out), "--fit_only", *CLI_ARGS]) == 0
    kmeans = out.parent / "boundaries.kmeans.npy"
    assert kmeans.is_file() and not out.exists()
    scp = read_kaldi_table(full / "wav.scp")
    merged = {}
    for part, keys in enumerate((sorted(scp)[::2], sorted(scp)[1::2])):
        part_dir = tmp_path / "split" / str(part)
        write_kaldi_table(part_dir / "wav.scp", {k: scp[k] for k in keys})
        assert main(["--data_dir", str(part_dir), "--out", str(part_dir / "boundaries"),
                     "--kmeans", str(kmeans), *CLI_ARGS]) == 0
        merged.update(read_kaldi_table(part_dir / "boundaries"))
    assert merged == read_kaldi_table(ref)


def test_also_segments_more_dirs_with_the_same_units(fsdd_dirs, tmp_path):
    """--also (ssl.sh's single-job stage 8: train, then the valid set in one process) gives
    each extra data dir the boundaries of a run of its own with the fitted units; with
    --fit_only the main data dir alone is left unsegmented."""
    from espnet_ofa.bin.segment import main
    from espnet_ofa.data import read_kaldi_table

    full, half = fsdd_dirs
    one = tmp_path / "one"
    assert main(["--data_dir", str(full), "--out", str(one / "train"),
                 "--also", str(half), str(one / "dev"), *CLI_ARGS]) == 0
    ref = tmp_path / "ref"
    assert main(["--data_dir", str(full), "--out", str(ref / "train"), *CLI_ARGS]) == 0
    assert main(["--data_dir", str(half), "--out", str(ref / "dev"),
                 "--kmeans", str(ref / "train.kmeans.npy"), *CLI_ARGS]) == 0
    for name in ("train", "dev"):
        assert read_kaldi_table(one / name) == read_kaldi_table(ref / name), name
    fit = tmp_path / "fit"
    assert main(["--data_dir", str(full), "--out", str(fit / "train"), "--fit_only",
                 "--also", str(half), str(fit / "dev"), *CLI_ARGS]) == 0
    assert not (fit / "train").exists()
    assert read_kaldi_table(fit / "dev") == read_kaldi_table(ref / "dev")


def test_cli_reports_invalid_data_dir(tmp_path, capsys):
    from espnet_ofa.bin.segment import main

    d = tmp_path / "data"
    d.mkdir()
    (d / "wav.scp").write_text("b x.wav\na y.wav\n")
    assert main(["--data_dir", str(d), "--out", str(tmp_path / "o"), "--no_progress"]) == 1
    assert "wav.scp:2: ids are not sorted" in capsys.readouterr().err
