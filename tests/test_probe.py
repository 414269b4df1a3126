"""Linear probe of frozen representations (espnet_ofa.recipe.probe, espnet_ofa.bin.probe)."""

import numpy as np
import pytest
import soundfile

from espnet_ofa.bin.probe import main
from espnet_ofa.data import DataDirError, write_kaldi_table
from espnet_ofa.recipe.probe import PooledSet, pool, pool_data_dir, probe_accuracy, word_labels

# Two "words": a low and a high tone, in noise of random level; 8 kHz like FSDD.
TONES = {"low": 300.0, "high": 1800.0}


def write_set(root, name, n_per_word, rng, rate=8000):
    data = root / name
    data.mkdir(parents=True)
    scp, text = {}, {}
    for word, freq in TONES.items():
        for i in range(n_per_word):
            t = np.arange(int(rate * rng.uniform(0.4, 0.7))) / rate
            wav = 0.3 * np.sin(2 * np.pi * freq * rng.uniform(0.95, 1.05) * t)
            wav += rng.uniform(0.01, 0.05) * rng.standard_normal(t.size)
            utt = f"{name}_{word}_{i:02d}"
            path = root / f"{utt}.wav"
            soundfile.write(path, wav.astype(np.float32), rate)
            scp[utt], text[utt] = str(path), word
    write_kaldi_table(data / "wav.scp", scp)
    write_kaldi_table(data / "text", text)
    return data


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    rng = np.random.default_rng(0)
    return root, write_set(root, "train", 6, rng), write_set(root, "heldout", 3, rng)


def test_pool_is_mean_and_std_over_time_per_layer():
    a = np.array([[1.0, 2.0], [3.0, 6.0]])
    b = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    pooled = pool([a, b])
    assert pooled.shape == (2, 4)
    np.testing.assert_allclose(pooled[0], [2.0, 4.0, 1.0, 2.0])
    np.testing.assert_allclose(pooled[1], [0.0, 1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="non-empty"):
        pool([np.zeros((0, 3))])
    with pytest.raises(ValueError, match="no layers"):
        pool([])


def test_probe_finds_the_informative_layer_and_only_it():
    rng = np.random.default_rng(1)

    def make(n):
        labels = np.array(["a", "b"] * n)
        centre = np.where(labels == "a", 2.0, -2.0)[:, None]
        informative = centre + 0.3 * rng.standard_normal((2 * n, 4))
        noise = rng.standard_normal((2 * n, 4))
        return PooledSet([f"u{i}" for i in range(2 * n)], np.stack([noise, informative], 1), labels)

    acc = probe_accuracy(make(50), {"test": make(200)})
    assert set(acc) == {"0", "1", "all"}
    assert acc["1"]["test"] == 1.0 and acc["all"]["test"] > 0.95
    assert 0.35 < acc["0"]["test"] < 0.65  # noise: chance


def test_probe_refuses_sets_from_different_extractors():
    train = PooledSet(["a", "b"], np.zeros((2, 2, 4)), np.array(["x", "y"]))
    other = PooledSet(["c"], np.zeros((1, 3, 4)), np.array(["x"]))
    with pytest.raises(ValueError, match="one extractor"):
        probe_accuracy(train, {"other": other})


def test_data_dir_must_be_single_words_with_a_label_for_each_utterance(sets, tmp_path):
    root, train, _ = sets
    assert word_labels(train)["train_low_00"] == "low"
    bad = tmp_path / "connected"
    bad.mkdir()
    write_kaldi_table(bad / "text", {"u1": "one two"})
    with pytest.raises(DataDirError, match="single-word"):
        word_labels(bad)
    partial = tmp_path / "partial"
    partial.mkdir()
    scp = (train / "wav.scp").read_text().splitlines()
    (partial / "wav.scp").write_text("\n".join(scp[:2]) + "\n")
    write_kaldi_table(partial / "text", {scp[0].split()[0]: "low"})
    with pytest.raises(DataDirError, match="no line for"):
        pool_data_dir(partial, lambda wav: [np.ones((3, 2))])
    with pytest.raises(ValueError, match="utterance 'train_high_00' .*too short"):
        pool_data_dir(train, lambda wav: [np.ones((0, 2))])  # a model that gave no frames


def test_pooled_labels_follow_their_utterances(sets):
    _, train, _ = sets
    seen = []

    def extract(wav):
        seen.append(wav.numel())
        return [wav[:1600].reshape(-1, 160).numpy()]  # 16 kHz: resampled from 8 kHz

    pooled = pool_data_dir(train, extract)
    assert len(pooled.utts) == 12 and pooled.features.shape == (12, 1, 320)
    assert [u.split("_")[1] for u in pooled.utts] == list(pooled.labels)
    assert min(seen) >= 0.4 * 16000


def test_cli_mfcc_separates_the_tones(sets, capsys):
    _, train, heldout = sets
    assert main(["--train_dir", str(train), "--test_dir", str(heldout), "--mfcc"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "|layer|heldout|"
    assert table[2] == "|0|1.000|"


def test_cli_ofa_model_gives_every_hidden_state_and_checks_the_rate(sets, capsys,
                                                                   tiny_ofa_checkpoint):
    _, train, heldout = sets
    model = str(tiny_ofa_checkpoint)
    assert main(["--train_dir", str(train), "--test_dir", str(heldout), "--ofa_model", model,
                 "--frame_period", "60"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [r.split("|")[1] for r in rows] == ["0", "1", "2", "all"]  # tiny: 2 layers
    for row in rows:
        assert 0.0 <= float(row.split("|")[2]) <= 1.0
    assert main(["--train_dir", str(train), "--test_dir", str(heldout), "--ofa_model", model,
                 "--frame_period", "500"]) == 1
    assert "error:" in capsys.readouterr().err
