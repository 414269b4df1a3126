"""Frozen OFA features computed once: the cache, ``frontend: ofa_cached``, and the model
trained on them becoming a waveform model (``frontend: ofa``).

Audio: 12 utterances of ``an4_small`` (16 kHz). The OFA model is a tiny random-weight
student: what is checked is that the cached path computes what the live path computes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from espnet_ofa.frontend.cached import CachedOFAFrontend
from espnet_ofa.frontend.ofa import OFAFrontend
from espnet_ofa.models.pretrained import save_student
from espnet_ofa.models.student import build_student
from espnet_ofa.recipe import feature_cache
from tiny_models import TINY_ASR_CONF as CONF


@pytest.fixture(scope="module")
def work(tmp_path_factory, an4_small, tiny_ofa_checkpoint) -> Path:
    """A tiny OFA checkpoint, a data dir of 12 utterances, a word token list."""
    root = tmp_path_factory.mktemp("cache")
    shutil.copytree(tiny_ofa_checkpoint.parent, root / "exp" / "ofa")
    rows = [json.loads(line) for line in (an4_small / "train.jsonl").read_text().splitlines()][:12]
    d = root / "data" / "train"
    d.mkdir(parents=True)
    ids = [f"utt{i:02d}" for i in range(len(rows))]
    (d / "wav.scp").write_text("".join(f"{u} {an4_small / r['audio']}\n" for u, r in zip(ids, rows)))
    (d / "text").write_text("".join(f"{u} {r['text']}\n" for u, r in zip(ids, rows)))
    (d / "utt2num_samples").write_text("".join(
        f"{u} {sf.info(str(an4_small / r['audio'])).frames}\n" for u, r in zip(ids, rows)))
    words = sorted({w for r in rows for w in r["text"].split()})
    (root / "tokens.txt").write_text("\n".join(["<blank>", "<unk>", *words, "<sos/eos>"]) + "\n")
    return root


def spec_for(work: Path, period: float, layer: int = -1) -> feature_cache.CacheSpec:
    conf = work / f"train_p{period:g}_l{layer}.yaml"
    base = yaml.safe_load(CONF.read_text())
    base["frontend_conf"].update(model=str(work / "exp/ofa/valid.loss.best.pth"),
                                 frame_period=period, layer=layer)
    conf.write_text(yaml.safe_dump(base))
    spec, why = feature_cache.cache_spec(conf)
    assert spec is not None, why
    return spec


@pytest.mark.parametrize("period,layer", [(40.0, -1), (80.0, 2)])
def test_cached_features_equal_live_ones_with_exact_lengths(work, period, layer):
    spec = spec_for(work, period, layer)
    scp = feature_cache.extract(spec, work / "data/train", work / f"cache_{spec.key()}",
                                max_batch_samples=16000 * 8, progress=False)
    cached = kaldiio.load_scp(str(scp))
    shapes = dict(line.split() for line in (scp.parent / "feats_shape").read_text().splitlines())
    assert sorted(cached) == sorted(shapes) and len(cached) == 12
    model = str(work / "exp/ofa/valid.loss.best.pth")
    frontend = OFAFrontend(model=model, frame_period=period, layer=layer).eval()
    reader = CachedOFAFrontend(model=model, frame_period=period, layer=layer)
    if layer == -1:  # a trained weighted sum, not the uniform start
        assert cached["utt00"].shape[1] == frontend.student.num_hidden * frontend.output_size()
        with torch.no_grad():
            frontend.layer_mix.weights.normal_()
        reader.load_state_dict(frontend.state_dict(), strict=False)
        torch.testing.assert_close(reader.layer_mix.weights, frontend.layer_mix.weights)
    else:
        assert list(reader.state_dict()) == []
    for utt in ("utt00", "utt05", "utt11"):
        with torch.no_grad():
            feats, lengths = frontend(*_audio(work, utt))
        mat = torch.from_numpy(np.array(cached[utt]))
        assert shapes[utt] == f"{mat.shape[0]},{mat.shape[1]}"
        assert mat.shape[0] == int(lengths[0]) == feats.shape[1]  # exactly the live frames
        out, out_lengths = reader(mat[None], torch.tensor([mat.shape[0]]))
        assert torch.equal(out_lengths, lengths)
        torch.testing.assert_close(out, feats, rtol=1e-5, atol=1e-5)


def _audio(work: Path, utt: str):
    wavs = dict(line.split(maxsplit=1) for line in (work / "data/train/wav.scp").read_text()
                .splitlines())
    audio = torch.from_numpy(sf.read(wavs[utt], dtype="float32")[0])
    return audio[None], torch.tensor([audio.numel()])


def test_the_cli_extracts_several_sets_with_one_model_load(work, tmp_path, monkeypatch):
    """s2t.sh's stage 10 extracts the train and valid sets in one process: each --data_dir
    into its --out_dir, the model built once, the features those of one set at a time."""
    from espnet_ofa.bin import feature_cache as cli

    spec = spec_for(work, 60.0)
    dev = tmp_path / "dev"
    dev.mkdir()
    lines = (work / "data/train/wav.scp").read_text().splitlines()[:3]
    (dev / "wav.scp").write_text("".join(line.replace("utt", "dev") + "\n" for line in lines))
    builds = []
    real = feature_cache.frozen_model
    monkeypatch.setattr(feature_cache, "frozen_model",
                        lambda *a, **k: builds.append(a) or real(*a, **k))
    conf = work / "train_p60_l-1.yaml"
    out = [tmp_path / "cache/train", tmp_path / "cache/dev"]
    assert cli.main(["extract", "--config", str(conf), "--data_dir", str(work / "data/train"),
                     str(dev), "--out_dir", *map(str, out)]) == 0
    assert len(builds) == 1
    train = kaldiio.load_scp(str(out[0] / "feats.scp"))
    devs = kaldiio.load_scp(str(out[1] / "feats.scp"))
    assert len(train) == 12 and sorted(devs) == ["dev00", "dev01", "dev02"]
    alone = kaldiio.load_scp(str(feature_cache.extract(spec, dev, tmp_path / "alone",
                                                       progress=False)))
    for utt in devs:
        np.testing.assert_array_equal(devs[utt], alone[utt])
        # the same audio in the train set, batched with other utterances: float noise only
        np.testing.assert_allclose(devs[utt], train[utt.replace("dev", "utt")], atol=1e-5)
    # Done already: nothing is built again.
    builds.clear()
    feature_cache.extract_sets(spec, [work / "data/train", dev], out, progress=False)
    assert builds == []
    with pytest.raises(ValueError, match="one output dir per data dir"):
        feature_cache.extract_sets(spec, [work / "data/train", dev], out[:1])


def test_extraction_resumes_after_a_kill_and_redoes_a_changed_cache(work):
    spec = spec_for(work, 60.0)
    out = work / "cache_resume"
    scp = feature_cache.extract(spec, work / "data/train", out, shard_utts=5, progress=False)
    whole = {k: v.copy() for k, v in kaldiio.load_scp(str(scp)).items()}
    first_ark = out / "shards/feats.0.ark"
    stamp = first_ark.stat().st_mtime_ns
    # A run killed while writing the last shard: its scp, feats.scp and "complete" missing.
    (out / "shards/feats.2.scp").unlink()
    (out / "shards/feats.2.ark").write_bytes(b"half a shard")
    scp.unlink()
    meta = json.loads((out / "meta.json").read_text())
    del meta["complete"]
    (out / "meta.json").write_text(json.dumps(meta))
    scp = feature_cache.extract(spec, work / "data/train", out, shard_utts=5, progress=False)
    assert first_ark.stat().st_mtime_ns == stamp  # finished shards are kept
    again = kaldiio.load_scp(str(scp))
    assert sorted(again) == sorted(whole)
    for utt, mat in whole.items():
        np.testing.assert_array_equal(again[utt], mat)
    # Another period: the same directory is recomputed, not reused.
    scp = feature_cache.extract(spec_for(work, 90.0), work / "data/train", out, shard_utts=5,
                                progress=False)
    assert kaldiio.load_scp(str(scp))["utt03"].shape[0] < whole["utt03"].shape[0]


def test_a_retrained_model_at_the_same_path_is_extracted_again(work, tmp_path):
    exp = tmp_path / "exp" / "ofa"
    torch.manual_seed(1)
    save_student(build_student("tiny"), exp, preset="tiny")
    conf = yaml.safe_load(CONF.read_text())
    conf["frontend_conf"].update(model=str(exp / "valid.loss.best.pth"), frame_period=60)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(conf))
    spec, _ = feature_cache.cache_spec(tmp_path / "c.yaml")
    scp = feature_cache.extract(spec, work / "data/train", tmp_path / "cache", progress=False)
    before = np.array(kaldiio.load_scp(str(scp))["utt02"])
    torch.manual_seed(2)
    save_student(build_student("tiny"), exp, preset="tiny")  # retrained: same path, new weights
    scp = feature_cache.extract(spec, work / "data/train", tmp_path / "cache", progress=False)
    assert not np.allclose(np.array(kaldiio.load_scp(str(scp))["utt02"]), before)


def test_cache_keys_and_which_experiments_stay_live(work, tmp_path):
    model = work / "exp/ofa/valid.loss.best.pth"
    conf = yaml.safe_load(CONF.read_text())
    conf["frontend_conf"]["model"] = str(model)
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump(conf))
    conf["frontend_conf"]["learnable_rate"] = True
    learnt = tmp_path / "learnt.yaml"
    learnt.write_text(yaml.safe_dump(conf))
    logmel = tmp_path / "logmel.yaml"
    logmel.write_text(yaml.safe_dump({"frontend": "default"}))
    plan = tmp_path / "plan.tsv"
    plan.write_text("".join(f"exp/{n}\t{c}\tkey\t{model}\t{x}\n" for n, c, x in [
        ("a_p20", fixed, "--frontend_conf frame_period=20"),
        ("a_p40", fixed, "--frontend_conf frame_period=40 --seed 1"),
        ("b", learnt, ""), ("c", logmel, ""),
        ("d", fixed, "--frontend_conf freeze=false")]))
    keys = feature_cache.plan_caches(plan)
    assert keys[0].endswith("_p20_all") and keys[1].endswith("_p40_all")  # stats per period
    assert keys[2:] == ["-", "-", "-"]
    assert feature_cache.plan_caches(plan, enabled=False) == ["-"] * 5
    # --<task>_args reach the cache too
    assert feature_cache.plan_caches(plan, train_args="--frontend_conf layer=3")[0].endswith(
        "_p20_l3")
    # Statistics: a cached experiment's are its cache's own; the first experiment of each
    # key collects them (stage 10), another seed on the same cache or frontend reuses them.
    plan.write_text("".join(f"exp/{n}\t{c}\t{k}\t{model}\t{x}\n" for n, c, k, x in [
        ("a_p20", fixed, "ofa_p20", "--frontend_conf frame_period=20"),
        ("b", learnt, "ofa_learned", ""),
        ("a_p20_seed1", fixed, "ofa_p20", "--frontend_conf frame_period=20 --seed 1"),
        ("b_seed1", learnt, "ofa_learned", "--seed 1")]))
    assert feature_cache.plan_stats(plan) == [
        (keys[0], keys[0], True, True, "ofa_cached"), ("-", "ofa_learned", True, False, "-"),
        (keys[0], keys[0], False, False, "ofa_cached"), ("-", "ofa_learned", False, False, "-")]
    assert [s[1:4] for s in feature_cache.plan_stats(plan, enabled=False)] == [
        ("ofa_p20", True, False), ("ofa_learned", True, False), ("ofa_p20", False, False),
        ("ofa_learned", False, False)]


def test_the_pooled_rival_trains_on_the_20ms_cache_with_statistics_of_its_own(work, tmp_path):
    model = work / "exp/ofa/valid.loss.best.pth"
    conf = yaml.safe_load(CONF.read_text())
    conf["frontend_conf"]["model"] = str(model)
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump(conf))
    pooled = "--frontend_conf frame_period=null --frontend_conf pooled_period={}"
    plan = tmp_path / "plan.tsv"
    plan.write_text("".join(f"exp/{n}\t{fixed}\t{k}\t{model}\t{x}\n" for n, k, x in [
        ("pooled40", "ofa_p20_pooled40", pooled.format(40)),
        ("p20", "ofa_p20", "--frontend_conf frame_period=20"),
        ("pooled80", "ofa_p20_pooled80", pooled.format(80)),
        ("pooled80_seed1", "ofa_p20_pooled80", pooled.format(80) + " --seed 1")]))
    rows = feature_cache.plan_stats(plan)
    cache = rows[1][0]
    assert cache.endswith("_p20_all") and {r[0] for r in rows} == {cache}  # one 20 ms cache
    # ... extracted once (by the first experiment on it), each pooled period normalised with
    # statistics of its own (pooling shrinks the variance), collected once per key
    assert [r[1:4] for r in rows] == [(f"{cache}_pooled40", True, True), (cache, True, False),
                                      (f"{cache}_pooled80", True, False),
                                      (f"{cache}_pooled80", False, False)]


def test_cached_pooled_rival_equals_the_live_one(work):
    spec = spec_for(work, 20.0)
    scp = feature_cache.extract(spec, work / "data/train", work / f"cache_{spec.key()}",
                                max_batch_samples=16000 * 8, progress=False)
    cached = kaldiio.load_scp(str(scp))
    model = str(work / "exp/ofa/valid.loss.best.pth")
    live = OFAFrontend(model=model, frame_period=None, pooled_period=80).eval()
    reader = CachedOFAFrontend(model=model, frame_period=None, pooled_period=80)
    with torch.no_grad():
        live.layer_mix.weights.normal_()
    reader.load_state_dict(live.state_dict(), strict=False)
    assert_pooled_cache_equals_live(work, cached, reader, live, ("utt00", "utt07"), pool=4)
    with pytest.raises(ValueError, match="integer multiple"):
        CachedOFAFrontend(model=model, frame_period=None, pooled_period=50)


def assert_pooled_cache_equals_live(work: Path, cached, reader, live, utts, pool: int) -> None:
    """``reader`` on a padded batch of the cached 20 ms features of ``utts`` gives, per
    utterance, the frames (ceil(T / pool)) and values ``live`` computes from the waveform."""
    mats = [torch.from_numpy(np.array(cached[u])) for u in utts]
    padded = torch.nn.utils.rnn.pad_sequence(mats, batch_first=True)
    out, out_lengths = reader(padded, torch.tensor([m.shape[0] for m in mats]))
    for i, utt in enumerate(utts):
        with torch.no_grad():
            feats, lengths = live(*_audio(work, utt))
        assert int(out_lengths[i]) == int(lengths[0]) == -(-mats[i].shape[0] // pool)
        torch.testing.assert_close(out[i, :lengths[0]], feats[0], rtol=1e-5, atol=1e-5)
        assert torch.all(out[i, lengths[0]:] == 0)


def test_cached_frontend_refuses_what_needs_the_live_model(work):
    model = str(work / "exp/ofa/valid.loss.best.pth")
    with pytest.raises(ValueError, match="use frontend: ofa"):
        CachedOFAFrontend(model=model, frame_period=40, learnable_rate=True)
    with pytest.raises(ValueError, match="use frontend: ofa"):
        CachedOFAFrontend(model=model, frame_period=40, freeze=False)
    with pytest.raises(ValueError, match="two jittered periods .* use frontend: ofa"):
        CachedOFAFrontend(model=model, frame_period=40, probe_jitter=0.1)
    # The options are frontend: ofa's, its defaults too (ESPnet reads them off the signature).
    with pytest.raises(ValueError, match="unknown option.* frame_priod for frontend: ofa"):
        CachedOFAFrontend(model=model, frame_priod=40)
    assert CachedOFAFrontend(model=model).rate.frame_period == 60.0  # OFAFrontend's default
    reader = CachedOFAFrontend(model=model, frame_period=40)
    with pytest.raises(ValueError, match="not wav.scp"):
        reader(torch.zeros(1, 16000), torch.tensor([16000]))


def run_espnet(args, cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "espnet2.bin.asr_train", *args], cwd=cwd,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_statistics_of_several_frontends_collected_in_one_process(work, tmp_path):
    """s2t.sh's stage 10 collects the statistics of several frontends through one
    ``espnet_ofa.bin.collect_stats`` process: each run reads its own options (JOB -> the
    job's number) and writes what ``asr_train --collect_stats true`` writes for it alone."""
    caches = {}
    for period, layer in ((40.0, -1), (80.0, 2)):
        spec = spec_for(work, period, layer)
        caches[period] = (work / f"train_p{period:g}_l{layer}.yaml",
                          feature_cache.extract(spec, work / "data/train",
                                                work / f"cache_{spec.key()}", progress=False))
    files = []
    for period, (conf, scp) in caches.items():
        options = ["--config", str(conf), "--frontend", "ofa_cached", "--ngpu", "0",
                   "--num_workers", "0", "--use_preprocessor", "true", "--token_type", "word",
                   "--token_list", "tokens.txt", "--train_shape_file", "data/train/wav.scp",
                   "--valid_shape_file", "data/train/wav.scp",
                   "--output_dir", str(tmp_path / f"stats_p{period:g}.JOB")]
        for part in ("train", "valid"):
            options += [f"--{part}_data_path_and_name_and_type", f"{scp},speech,kaldi_ark",
                        f"--{part}_data_path_and_name_and_type", "data/train/text,text,text"]
        args = tmp_path / f"p{period:g}.args"
        args.write_text("\n".join(options) + "\n")
        files += ["--args_file", str(args)]
    proc = subprocess.run([sys.executable, "-m", "espnet_ofa.bin.collect_stats", "--task", "asr",
                           "--job", "3", *files], cwd=work, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.returncode == 0, proc.stdout[-4000:]
    for period, (conf, scp) in caches.items():
        out = tmp_path / f"stats_p{period:g}.3" / "train"
        frames = {u: int(s.split(",")[0]) for u, s in (
            line.split() for line in (scp.parent / "feats_shape").read_text().splitlines())}
        stats = np.load(out / "feats_stats.npz")
        assert int(stats["count"]) == sum(frames.values())  # this run's cache, every frame
        # D channels after the layer mix: one cached layer's width (the 80 ms cache)
        one_layer = int(caches[80.0][1].parent.joinpath("feats_shape").read_text()
                        .split()[1].split(",")[1])
        assert stats["sum"].shape == (one_layer,)
        lengths = dict(line.split() for line in (out / "speech_shape").read_text().splitlines())
        assert {u: int(v.split(",")[0]) for u, v in lengths.items()} == frames
    assert (np.load(tmp_path / "stats_p40.3/train/feats_stats.npz")["count"]
            > 1.8 * np.load(tmp_path / "stats_p80.3/train/feats_stats.npz")["count"])
    # A missing options file: named before ESPnet runs anything.
    proc = subprocess.run([sys.executable, "-m", "espnet_ofa.bin.collect_stats", "--task", "asr",
                           "--args_file", str(tmp_path / "none.args")], cwd=work, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert proc.returncode == 1 and "none.args not found" in proc.stdout


def test_trained_on_the_cache_then_run_from_the_waveform(work):
    """ESPnet trains on the cache (stats, SpecAugment, global MVN), the model becomes a
    ``frontend: ofa`` model, and that one, from the waveform, computes what the cached one
    computes from the cache, and decodes the same."""
    from espnet2.bin.asr_inference import Speech2Text
    from espnet2.tasks.asr import ASRTask

    spec = spec_for(work, 40.0)
    scp = feature_cache.extract(spec, work / "data/train", work / "cache_train",
                                progress=False)
    conf = work / "train_p40_l-1.yaml"
    common = ["--config", str(conf), "--frontend", "ofa_cached", "--ngpu", "0",
              "--num_workers", "0", "--use_preprocessor", "true", "--token_type", "word",
              "--token_list", "tokens.txt", "--max_epoch", "1", "--batch_size", "4",
              "--use_matplotlib", "false"]
    for part in ("train", "valid"):
        common += [f"--{part}_data_path_and_name_and_type", f"{scp},speech,kaldi_ark",
                   f"--{part}_data_path_and_name_and_type", "data/train/text,text,text"]
    run_espnet([*common, "--collect_stats", "true", "--output_dir", "stats",
                "--train_shape_file", "data/train/wav.scp",
                "--valid_shape_file", "data/train/wav.scp"], work)
    run_espnet([*common, "--output_dir", "exp/cached", "--fold_length", "80000",
                "--train_shape_file", "data/train/utt2num_samples",
                "--valid_shape_file", "data/train/utt2num_samples",
                "--normalize", "global_mvn", "--normalize_conf",
                "stats_file=stats/train/feats_stats.npz"], work)
    cached_dir, wave_dir = work / "exp/cached", work / "exp/wave"
    # Stage 11 converts every model trained on a cache in one process: the i-th --out_dir
    # gets the i-th --cached_dir's model (here the same one twice).
    from espnet_ofa.bin import feature_cache as cli

    assert cli.main(["to_waveform", "--cached_dir", str(cached_dir), str(cached_dir),
                     "--out_dir", str(work / "exp/wave_copy"), str(wave_dir)]) == 0
    with pytest.raises(SystemExit) as unpaired:
        cli.main(["to_waveform", "--cached_dir", str(cached_dir), "--out_dir",
                  str(wave_dir), str(work / "exp/unpaired")])
    assert unpaired.value.code == 2
    assert not (work / "exp/unpaired").exists()
    written = sorted(wave_dir.glob("*.pth"))
    assert sorted(p.name for p in (work / "exp/wave_copy").glob("*.pth")) == [
        p.name for p in written]
    assert (wave_dir / "valid.loss.best.pth") in written
    assert (wave_dir / "valid.loss.best.pth").is_symlink()  # as ESPnet left it
    assert yaml.safe_load((wave_dir / "config.yaml").read_text())["frontend"] == "ofa"
    stamp = (wave_dir / "valid.loss.best.pth").stat().st_mtime_ns
    assert sorted(feature_cache.to_waveform_model(cached_dir, wave_dir)) == written
    assert (wave_dir / "valid.loss.best.pth").stat().st_mtime_ns == stamp  # rerun: untouched

    cwd = os.getcwd()
    os.chdir(work)  # the configs' paths are relative to the recipe directory
    try:
        cached_model, _ = ASRTask.build_model_from_file(
            cached_dir / "config.yaml", cached_dir / "valid.loss.best.pth", "cpu")
        s2t = Speech2Text(asr_train_config=str(wave_dir / "config.yaml"),
                          asr_model_file=str(wave_dir / "valid.loss.best.pth"),
                          beam_size=2, ctc_weight=0.3)
    finally:
        os.chdir(cwd)
    weights = s2t.asr_model.frontend.layer_mix.weights
    assert not torch.equal(weights, torch.zeros_like(weights))  # the trained sum came along
    torch.testing.assert_close(weights, cached_model.frontend.layer_mix.weights)
    cached_model.eval()
    feats = kaldiio.load_scp(str(scp))
    for utt in ("utt01", "utt07"):
        wav, n = _audio(work, utt)
        mat = torch.from_numpy(np.array(feats[utt]))[None]
        with torch.no_grad():
            enc_wave, len_wave = s2t.asr_model.encode(wav, n)
            enc_cached, len_cached = cached_model.encode(mat, torch.tensor([mat.shape[1]]))
        assert torch.equal(len_wave, len_cached)
        torch.testing.assert_close(enc_wave, enc_cached, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ the teacher's cache
def teacher_config(work: Path, path: Path, **frontend_conf) -> Path:
    """The downstream config of `CONF` on ``frontend: ssl_teacher`` (the tiny teacher)."""
    conf = yaml.safe_load(CONF.read_text())
    conf["frontend"] = "ssl_teacher"
    conf["frontend_conf"] = {"source": str(work / "teacher.pth"), **frontend_conf}
    path.write_text(yaml.safe_dump(conf))
    return path


@pytest.fixture(scope="module")
def teacher(work) -> Path:
    from tiny_models import save_tiny_teacher

    return save_tiny_teacher(work / "teacher.pth")


def test_cached_teacher_pooled_equals_the_live_one(work, teacher, tmp_path):
    """The teacher is cached once at its own 20 ms (all its hidden states); ``frontend:
    ssl_teacher_cached`` mixes and pools them to what ``ssl_teacher`` computes live."""
    from espnet_ofa.frontend.cached import CachedTeacherFrontend
    from espnet_ofa.frontend.teacher import SSLTeacherFrontend

    spec, why = feature_cache.cache_spec(teacher_config(work, tmp_path / "t.yaml",
                                                        pooled_period=40))
    assert spec is not None, why
    assert (spec.frontend, spec.frame_period, spec.layer) == ("ssl_teacher", 20.0, -1)
    assert spec.key().startswith("ssl_teacher_teacher.pth_") and spec.key().endswith("_p20_all")
    scp = feature_cache.extract(spec, work / "data/train", tmp_path / "cache", progress=False)
    cached = kaldiio.load_scp(str(scp))
    live = SSLTeacherFrontend(source=str(teacher), pooled_period=40).eval()
    reader = CachedTeacherFrontend(source=str(teacher), pooled_period=40)
    with torch.no_grad():
        live.layer_mix.weights.normal_()
    missing, _ = reader.load_state_dict(live.state_dict(), strict=False)
    assert not missing and set(reader.state_dict()) == {"layer_mix.weights"}
    assert reader.cached_dim() == 3 * live.output_size()  # the input and 2 layers
    assert reader.extra_stats() == live.extra_stats() == {"frame_period": 40.0}
    assert_pooled_cache_equals_live(work, cached, reader, live, ("utt02", "utt09"), pool=2)
    with pytest.raises(ValueError, match="frame_priod"):
        CachedTeacherFrontend(source=str(teacher), frame_priod=40)


def test_a_changed_teacher_is_extracted_again(work, teacher, tmp_path):
    """The cache records the teacher's weights, not its path: other weights at the same path
    (or a bundle that is only a name) give new features."""
    source = tmp_path / "teacher.pth"
    shutil.copy(teacher, source)
    conf = teacher_config(work, tmp_path / "t.yaml")
    yaml_conf = yaml.safe_load(conf.read_text())
    yaml_conf["frontend_conf"]["source"] = str(source)
    conf.write_text(yaml.safe_dump(yaml_conf))
    spec, _ = feature_cache.cache_spec(conf, "--frontend_conf layer=2")
    assert spec.key().endswith("_p20_l2")
    scp = feature_cache.extract(spec, work / "data/train", tmp_path / "cache", progress=False)
    before = np.array(kaldiio.load_scp(str(scp))["utt04"])
    assert before.shape[1] == 64  # one hidden state of the tiny teacher
    state = torch.load(source, weights_only=False)
    weights = state["state_dict"] if "state_dict" in state else state
    name = next(k for k in weights if k.endswith("weight") and "encoder.transformer.layers.1" in k)
    weights[name] = weights[name] * 2
    torch.save(state, source)
    after = np.array(kaldiio.load_scp(str(feature_cache.extract(
        spec, work / "data/train", tmp_path / "cache", progress=False)))["utt04"])
    assert before.shape == after.shape and not np.allclose(before, after)


def test_teacher_rivals_share_one_cache_with_statistics_per_pooled_period(work, teacher,
                                                                         tmp_path):
    conf = teacher_config(work, tmp_path / "t.yaml")
    plan = tmp_path / "plan.tsv"
    plan.write_text("".join(f"exp/{n}\t{conf}\t{k}\t-\t{x}\n" for n, k, x in [
        ("t_pooled40", "ssl_teacher_x", "--frontend_conf pooled_period=40"),
        ("t_pooled80", "ssl_teacher_y", "--frontend_conf pooled_period=80"),
        ("t_pooled80_seed1", "ssl_teacher_y", "--frontend_conf pooled_period=80 --seed 1")]))
    rows = feature_cache.plan_stats(plan)
    cache = rows[0][0]
    assert cache.startswith("ssl_teacher_") and {r[0] for r in rows} == {cache}
    assert rows == [(cache, f"{cache}_pooled40", True, True, "ssl_teacher_cached"),
                    (cache, f"{cache}_pooled80", True, False, "ssl_teacher_cached"),
                    (cache, f"{cache}_pooled80", False, False, "ssl_teacher_cached")]
    assert feature_cache.plan_caches(plan, enabled=False) == ["-"] * 3


def test_a_model_trained_on_the_teacher_cache_becomes_a_teacher_model(work, teacher, tmp_path):
    """to_waveform: ``ssl_teacher_cached`` -> ``ssl_teacher`` with the same options, and the
    checkpoints gain the teacher's weights next to the trained ones."""
    from espnet_ofa.frontend.teacher import SSLTeacherFrontend

    cached_dir, out_dir = tmp_path / "cached", tmp_path / "wave"
    cached_dir.mkdir()
    conf = yaml.safe_load(teacher_config(work, tmp_path / "t.yaml", pooled_period=80)
                          .read_text())
    conf["frontend"] = "ssl_teacher_cached"
    (cached_dir / "config.yaml").write_text(yaml.safe_dump(conf))
    trained = {"frontend.layer_mix.weights": torch.tensor([0.1, 0.2, 0.3]),
               "encoder.weight": torch.ones(2, 2)}
    torch.save(trained, cached_dir / "3epoch.pth")
    os.symlink("3epoch.pth", cached_dir / "valid.loss.best.pth")
    written = feature_cache.to_waveform_model(cached_dir, out_dir)
    assert sorted(p.name for p in written) == ["3epoch.pth", "valid.loss.best.pth"]
    wave_conf = yaml.safe_load((out_dir / "config.yaml").read_text())
    assert wave_conf["frontend"] == "ssl_teacher"
    assert wave_conf["frontend_conf"] == conf["frontend_conf"]
    state = torch.load(out_dir / "valid.loss.best.pth", weights_only=True)
    live = SSLTeacherFrontend(**wave_conf["frontend_conf"])
    live.load_state_dict({k[len("frontend."):]: v for k, v in state.items()
                          if k.startswith("frontend.")})  # strict: every weight is there
    torch.testing.assert_close(live.layer_mix.weights, trained["frontend.layer_mix.weights"])
    assert torch.equal(state["encoder.weight"], trained["encoder.weight"])
    with pytest.raises(ValueError, match="not a model trained on cached SSL features"):
        feature_cache.waveform_config({"frontend": "ssl_teacher"})


def test_a_set_with_the_same_audio_links_the_cache_of_its_twin(work, tmp_path, monkeypatch):
    """speechocean762's phone sets are its word sets with other text: the same utterances
    in other copies of the same audio. Their features are linked from the word set's cache
    (hard links: no second copy, and unharmed when that cache is extracted again), without
    building the OFA model; a set whose audio differs in one file is extracted."""
    spec = spec_for(work, 80.0)
    key = tmp_path / spec.key()
    wavs = dict(line.split(maxsplit=1) for line in
                (work / "data/train/wav.scp").read_text().splitlines())

    def copy_set(name: str, change: str = "") -> Path:
        """The audio written again as the format stage writes it (16-bit PCM WAV)."""
        d = tmp_path / "data" / name
        (d / "wav").mkdir(parents=True)
        lines = []
        for utt, path in sorted(wavs.items()):
            audio, rate = sf.read(path, dtype="float32")
            sf.write(d / "wav" / f"{utt}.wav", audio * (0.5 if utt == change else 1.0), rate,
                     subtype="PCM_16")
            lines.append(f"{utt} {d / 'wav' / f'{utt}.wav'}\n")
        (d / "wav.scp").write_text("".join(lines))
        return d

    words = feature_cache.extract(spec, copy_set("train"), key / "train", shard_utts=5,
                                  progress=False)
    want = {u: np.array(m) for u, m in kaldiio.load_scp(str(words)).items()}

    def no_model(*args, **kwargs):
        raise AssertionError("the OFA model was built for a linked or finished cache")

    monkeypatch.setattr(feature_cache, "frozen_model", no_model)
    phones = feature_cache.extract(spec, copy_set("train_phone"), key / "train_phone",
                                   shard_utts=5, progress=False)
    arks = sorted((key / "train_phone" / "shards").glob("*.ark"))
    assert len(arks) == 3 and all(a.stat().st_nlink == 2 for a in arks)  # linked, not copied
    got = kaldiio.load_scp(str(phones))
    assert sorted(got) == sorted(want)
    for utt in want:
        np.testing.assert_array_equal(got[utt], want[utt])
    assert (key / "train_phone" / "feats_shape").read_text() == \
        (key / "train" / "feats_shape").read_text()
    # A rerun keeps it; the word set extracted again (here: removed) leaves it readable.
    assert feature_cache.extract(spec, tmp_path / "data/train_phone", key / "train_phone",
                                 shard_utts=5, progress=False) == phones
    shutil.rmtree(key / "train")
    np.testing.assert_array_equal(kaldiio.load_scp(str(phones))["utt03"], want["utt03"])
    # One file's audio differs: extracted, not linked.
    monkeypatch.undo()
    other = feature_cache.extract(spec, copy_set("train_other", change="utt03"),
                                  key / "train_other", shard_utts=5, progress=False)
    assert all(a.stat().st_nlink == 1 for a in (key / "train_other" / "shards").glob("*.ark"))
    assert not np.allclose(kaldiio.load_scp(str(other))["utt03"], want["utt03"])
