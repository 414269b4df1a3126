"""INTEGRATION (slow): the FSDD recipes end to end on real speech.

``egs2/fsdd/asr1/run.sh`` stages 1-13 on a small subset: stages 1-10 are the session
fixture ``fsdd_recipes`` (conftest.py; stage 10 runs ``../ssl1`` first: tiny HuBERT teacher,
pseudo boundaries, OFA pretraining, a fixed-rate and a single-period CIF student at 80 ms,
pack), whose OFA model the scale smokes reuse; stages 11-13 here train the OFA downstream
at 20 and 80 ms, with a learnt rate (and its jitter control, after it), with the period
sampled per batch, on the fixed-rate and single-period CIF students, on the OFA model at
20 ms pooled to 80 ms, and on log-mel (speed perturbation, single takes and SpecAugment on,
as in the recipe); a rerun adding a second seed. slu1 and st1 on the same OFA model are in
``test_recipe_fsdd_slu_st.py`` (a file of their own, so that they run on the other xdist
worker while this one trains). The recipes run in a copy of their directories under a
temporary ``egs2/`` whose TEMPLATE links to the repository's.

Set ESPNET_OFA_SKIP_RECIPE_E2E=1 to skip this module.
"""

import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import (FSDD_ASR_OPTS, FSDD_DATA_OPTS, FSDD_FIRST_STOP_STAGE, FSDD_TRAIN_ARGS,
                      recipe_env, run_recipe)

pytestmark = pytest.mark.skipif(
    os.environ.get("ESPNET_OFA_SKIP_RECIPE_E2E", "") not in ("", "0"),
    reason="ESPNET_OFA_SKIP_RECIPE_E2E is set")


def run(recipe: Path, args: str, fsdd: Path) -> subprocess.CompletedProcess:
    return run_recipe(recipe, args, recipe_env(FSDD=fsdd))


def result_rows(results_md: Path, section: str = ""):
    """[(dataset, period, metric cells...)] of the table rows in RESULTS.md (only those
    under the heading ``## <section>`` when given)."""
    rows, inside = [], not section
    for line in results_md.read_text().splitlines():
        if section and line.startswith("## "):
            inside = line == f"## {section}"
        cells = line.strip("|").split("|")
        if inside and line.startswith("|") and cells[0] not in ("dataset", "---"):
            rows.append(cells)
    return rows


@pytest.fixture(scope="module")
def egs(fsdd_recipes):
    return fsdd_recipes.check().recipes


@pytest.fixture(scope="module")
def fsdd(fsdd_recordings) -> Path:
    return fsdd_recordings.parent


@pytest.fixture(scope="module")
def asr_run(egs, fsdd, fsdd_recipes):
    """Stages 11-13 after the fixture's 1-10: the stdout and stderr of both runs."""
    start_time = time.time()
    r = run(egs / "asr1", f"--stage {FSDD_FIRST_STOP_STAGE + 1} --stop_stage 13 {FSDD_ASR_OPTS}",
            fsdd)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-5000:])
    both = subprocess.CompletedProcess(r.args, 0, fsdd_recipes.stdout + r.stdout,
                                       fsdd_recipes.stderr + r.stderr)
    return both, time.time() - start_time


def ofa_stats_key(stats, model: str, period: float) -> str:
    """The statistics of the OFA model ``model`` at ``period``: the planner's key
    (``ofa_<model>_p80``) or, for features computed once, the cache's
    (``ofa_<model>_<frontend hash>_p80_<layers>``); not the pooled rival's (``..._pooled80``)."""
    pattern = re.compile(
        rf"ofa_{re.escape(model)}(_default_[0-9a-f]+)?_p{period:g}(_all|_l\d+)?")
    found = [k for k in stats if pattern.fullmatch(k)]
    assert len(found) == 1, (model, period, sorted(stats))
    return found[0]


def test_asr1_runs_ssl1_first_and_leaves_results(egs, asr_run):
    r, seconds = asr_run
    ssl = egs / "ssl1"
    assert (ssl / "exp/ssl_train_ofa_tiny/valid.loss.best.pth").is_file()
    assert (ssl / "exp/ssl_train_ofa_tiny/packed.zip").is_file()
    assert (ssl / "exp/hubert_train_hubert_tiny/valid.loss.best.pth").is_file()
    fixed_conf = (ssl / "exp/ssl_train_ofa_tiny_fixed80/config.yaml").read_text()
    assert "compression: fixed" in fixed_conf  # the fixed-rate student, beside the OFA one
    assert (ssl / "exp/ssl_train_ofa_tiny_fixed80/valid.loss.best.pth").is_file()
    cif_conf = yaml.safe_load((ssl / "exp/ssl_train_ofa_tiny_cif80/config.yaml").read_text())
    assert cif_conf["student_conf"]["compression"] == "cif"  # the single-period CIF student
    assert cif_conf["student_conf"]["frame_period_range"] == [80.0, 80.0]
    assert "running ../ssl1/run.sh" in r.stderr
    for stage in range(1, 14):
        assert re.search(rf"\(asr.sh\) Stage {stage}[: ]", r.stderr), stage
    for stage in range(1, 12):
        assert re.search(rf"\(ssl.sh\) Stage {stage}[: ]", r.stderr), stage
    assert "progress: decoded test at p20" in r.stdout  # progress reaches the terminal
    asr = egs / "asr1"
    assert (asr / "data/train_sp/wav.scp").is_file()  # speed perturbation on
    # Statistics per SSL model and period (64-d OFA features), 80 log-mels.
    # (Cached experiments keep theirs under the cache's key, the same model and period.)
    stats = {d.name: d for d in (asr / "exp/asr_stats_raw_en_word").iterdir() if d.is_dir()}
    keys = {(model, period): ofa_stats_key(stats, model, period) for model, period in (
        ("ssl_train_ofa_tiny", 20), ("ssl_train_ofa_tiny", 80),
        ("ssl_train_ofa_tiny_fixed80", 80), ("ssl_train_ofa_tiny_cif80", 80))}
    assert len(set(keys.values())) == 4, keys
    dims = {name: np.load(d / "train/feats_stats.npz")["sum"].shape[0]
            for name, d in stats.items() if (d / "train/feats_stats.npz").is_file()}
    logmel = [n for n in dims if n.startswith("default_")]
    assert len(logmel) == 1 and dims[logmel[0]] == 80
    assert dims[keys[("ssl_train_ofa_tiny", 20)]] == 64
    # Baselines are decoded as trained: the fixed-rate student at 80 ms, log-mel once.
    def rates(exp):
        return {d.name for d in (asr / "exp" / exp).glob("decode_*/*")
                if d.is_dir() and d.name != "logdir"}

    assert rates("asr_train_asr_ofa_fixed80") == {"p80"} and rates("asr_train_asr_logmel") == {"native"}
    assert rates("asr_train_asr_ofa_cif80") == {"p80"}
    assert rates("asr_train_asr_ofa_pooled80") == {"p80"}  # pooled: its own period only
    # The teacher pooled the same way: trained on its 20 ms cache, run from the waveform.
    teacher = asr / "exp/asr_train_asr_ofa_teacher_pooled80"
    assert rates("asr_train_asr_ofa_teacher_pooled80") == {"p80"}
    assert yaml.safe_load((teacher / "cached/config.yaml").read_text())["frontend"] == \
        "ssl_teacher_cached"
    assert yaml.safe_load((teacher / "config.yaml").read_text())["frontend"] == "ssl_teacher"
    assert len(list((asr / "dump/ofa_feats").glob("ssl_teacher_*_p20_all/train_sp/feats.scp"))) == 1
    assert rates("asr_train_asr_ofa_sampled") == {"p20", "p80"}  # one model, every period
    jitter = (asr / "exp/asr_train_asr_ofa_learned_rate_jitter/config.yaml").read_text()
    learnt = yaml.safe_load(jitter)["frontend_conf"]
    assert learnt["probe_jitter"] is True and not learnt["learnable_rate"]
    assert rates("asr_train_asr_ofa_learned_rate_jitter") == {f"p{learnt['frame_period']:g}"}
    text = (asr / "RESULTS.md").read_text()
    assert "## Summary: a model per frame period" in text
    assert "## Summary: OFA against the baselines" in text
    for exp in ("asr_train_asr_ofa_p20", "asr_train_asr_ofa_p80", "asr_train_asr_ofa_learned_rate",
                "asr_train_asr_ofa_fixed80", "asr_train_asr_ofa_cif80", "asr_train_asr_logmel",
                "asr_train_asr_ofa_pooled80", "asr_train_asr_ofa_sampled",
                "asr_train_asr_ofa_learned_rate_jitter", "asr_train_asr_ofa_teacher_pooled80"):
        assert f"## exp/{exp}" in text
    pooled = result_rows(asr / "RESULTS.md", "The pooled rival: the OFA model at 20 ms, its "
                         "features average-pooled")
    assert {(c[0], c[1]) for c in pooled} == {("test", "80"), ("test_theo", "80")}
    for cells in pooled:  # OFA cheaper than the pooled rival, which pays the SSL at 20 ms
        assert float(cells[3]) < float(cells[5]) and "[" in cells[6]
        assert len(cells) == 12 and "[" in cells[10]  # ... and the pooled teacher beside it
    sampled = result_rows(asr / "RESULTS.md", "One model for every period: the period sampled "
                          "per training batch")
    assert {(c[0], c[1]) for c in sampled} == {(s, p) for s in ("test", "test_theo")
                                               for p in ("20", "80")}
    assert len(result_rows(asr / "RESULTS.md",
                           "The learnt rate against its jitter control")) == 2
    rows = result_rows(asr / "RESULTS.md")
    compare = {(c[0], c[1]): c for c in rows if len(c) == 11}  # OFA vs baselines, per period
    assert set(compare) == {(s, p) for s in ("test", "test_theo") for p in ("20", "80")}
    for (dset, period), cells in compare.items():
        assert float(cells[9]) >= 0 and "[" in cells[10]  # the log-mel floor, with an interval
        # the fixed-rate and single-period CIF students at 80 ms only
        assert ("[" in cells[4]) == ("[" in cells[7]) == (period == "80")
    summary = [c for c in rows if len(c) == 10]  # the summary names each row's experiment
    assert {(c[0], c[1], c[9]) for c in summary if c[1] in ("20", "80")} == {
        (s, p, f"asr_train_asr_ofa_{m}") for s in ("test", "test_theo")
        for p, m in (("20", "p20"), ("80", "p80"), ("80", "fixed80"), ("80", "cif80"),
                     ("80", "pooled80"), ("80", "teacher_pooled80"))}
    rows = [c for c in rows if len(c) == 9]
    fixed = [(c[0], c[1]) for c in rows if c[1] in ("20", "80")]
    assert sorted(fixed) == sorted([(s, p) for s in ("test", "test_theo") for p in ("20", "80")
                                    for _model in ("p20", "p80", "sampled")] +
                                   [(s, "80") for s in ("test", "test_theo")
                                    for _model in ("fixed80", "cif80", "pooled80",
                                                   "teacher_pooled80")])
    learned = [c for c in rows if c[1].startswith("learned")]
    assert {c[0] for c in learned} == {"test", "test_theo"}
    for cells in rows:
        wer, gmacs, rtf = float(cells[4]), float(cells[7]), float(cells[8])
        assert wer >= 0.0 and gmacs > 0 and 0 < rtf < 5  # 1 epoch: any WER
        if cells[1] in ("20", "80"):  # achieved ~ asked (fixed-rate pooling rounds per utterance)
            assert abs(float(cells[2]) / float(cells[1]) - 1.0) < 0.05
    for cells in summary:
        if cells[1] in ("20", "80") and "fixed" not in cells[9] and "pooled" not in cells[9]:
            assert abs(float(cells[2]) - float(cells[1])) < 1.0  # OFA: exactly the period
    macs = {c[1]: float(c[7]) for c in rows if c[0] == "test" and c[1] in ("20", "80")}
    assert macs["80"] < macs["20"]  # a longer period costs less
    assert (egs / "asr1/RESULTS.png").stat().st_size > 10000
    # The learnt rate through ESPnet's trainer (without DDP): logged (its plot is checked in
    # test_frontend_espnet.py; these runs draw none, FSDD_TRAIN_ARGS).
    learned = asr / "exp/asr_train_asr_ofa_learned_rate"
    assert "rate_slope=" in (learned / "train.log").read_text()
    print(f"asr1 stages 11-13: {seconds:.0f} s")


def test_asr1_rerun_keeps_finished_work(egs, asr_run, fsdd):
    """A rerun from stage 1 keeps the statistics it has (the data stages write the same
    tables, so nothing they come from changed); stage 11
    again resumes (nothing left to train) and adds a second seed; stages 12-13 again, now
    with two decoding jobs, give the same scores (for one of the experiments, to save
    time), and the comparison gives the mean and spread over the seeds."""
    asr = egs / "asr1"
    exp = asr / "exp/asr_train_asr_ofa_p20"
    model = (exp / "valid.loss.best.pth").stat().st_mtime_ns
    stats = next((asr / "exp").glob("asr_stats_*/ofa_*_p20_all/train/feats_stats.npz"))
    collected = stats.stat().st_mtime_ns
    before = result_rows(asr / "RESULTS.md", "exp/asr_train_asr_ofa_p20")
    assert len(before) == 4
    opts = ('--asr_configs conf/train_asr_ofa.yaml '
            f'--asr_args "{FSDD_TRAIN_ARGS}" --frame_periods "20 80" --train_frame_periods 20 '
            '--fixed_rate_periods "" --single_rate_periods "" --pooled_periods "" --teacher_pooled_periods "" --seeds 2 '
            '--inference_nj 2 --max_parallel_exps 1')  # both seeds in each decoding job
    r = run(asr, f'--stage 1 --stop_stage 13 --local_data_opts "{FSDD_DATA_OPTS}" --nj 1 {opts}',
            fsdd)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{stats.parent.parent.name}: up to date" in r.stderr
    assert stats.stat().st_mtime_ns == collected
    assert (exp / "valid.loss.best.pth").stat().st_mtime_ns == model  # resumed: nothing to do
    assert "--seed 1" in (asr / "exp/asr_train_asr_ofa_p20_seed1/train.log").read_text()
    merged = list(exp.glob("decode_*/p20/test/text"))
    assert list(exp.glob("decode_*/p20/test/split2/2/text")) and merged  # two jobs, merged
    # Stage 12 again with the same models and options: nothing is decoded twice.
    decoded_at = merged[0].stat().st_mtime_ns
    r = run(asr, f'--stage 12 --stop_stage 12 {opts}', fsdd)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("decoded already") == 2  # the seed 0 and seed 1 models
    assert merged[0].stat().st_mtime_ns == decoded_at
    after = result_rows(asr / "RESULTS.md", "exp/asr_train_asr_ofa_p20")
    # The same scores (GMACs/s and RTF, the last columns, are measured on other utterances).
    assert [row[:7] for row in before] == [row[:7] for row in after]
    text = (asr / "RESULTS.md").read_text()
    assert "mean ± standard deviation over the runs (up to 2)" in text
    assert "do not cover the pretraining run" in text  # one pretraining seed
    # Seeds and no baseline: the OFA models' mean and spread per period, no baseline columns.
    compare = result_rows(asr / "RESULTS.md", "Summary: the OFA models over seeds, each model "
                          "at the period it was trained at")
    assert compare and all(len(c) == 3 for c in compare)
    assert {c[0] for c in compare} == {"test", "test_theo"} and all(" ± " in c[2] for c in compare)
