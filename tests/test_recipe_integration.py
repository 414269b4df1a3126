"""INTEGRATION (slow, ~4 min on 2 CPU cores): the FSDD recipes end to end on real speech.

One module-scoped run of ``egs2/fsdd/asr1/run.sh`` stages 1-13 on a small subset, which
runs ``../ssl1`` first (tiny HuBERT teacher, pseudo boundaries, OFA pretraining and a
fixed-rate student at 80 ms, pack), and trains the OFA downstream at 20 and 80 ms, with a
learnt rate (and its jitter control, after it), with the period sampled per batch, on the
fixed-rate student, on the OFA model at 20 ms pooled to 80 ms, and on log-mel (speed
perturbation, single takes and SpecAugment on, as in the recipe); a rerun adding a second seed; then slu1 and st1
(side by side) through one training epoch and scoring on the same OFA model. The recipes run in a copy of their directories under a temporary ``egs2/`` whose
TEMPLATE links to the repository's.

Set ESPNET_OFA_SKIP_RECIPE_E2E=1 to skip this module.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
FSDD = REPO.parent / "shared" / "data" / "fsdd"

pytestmark = pytest.mark.skipif(
    os.environ.get("ESPNET_OFA_SKIP_RECIPE_E2E", "") not in ("", "0"),
    reason="ESPNET_OFA_SKIP_RECIPE_E2E is set")

SSL_OPTS = ("--local_data_opts '--train_takes 3 --dev_takes 1 --test_takes 1 --heldout_takes 1' "
            "--n_units 20 --teacher_args '--max_epoch 1' --ssl_args '--max_epoch 1'")
DATA_OPTS = "--train_takes 3 --dev_takes 1 --test_takes 1 --heldout_takes 1"


def run(recipe: Path, args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "FSDD": str(FSDD)}
    return subprocess.run(["bash", "-c", f"./run.sh {args}"], cwd=recipe, capture_output=True,
                          text=True, env=env, timeout=timeout)


def start(recipe: Path, args: str) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "FSDD": str(FSDD)}
    return subprocess.Popen(["bash", "-c", f"./run.sh {args}"], cwd=recipe, text=True, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


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
def egs(tmp_path_factory):
    if not (FSDD / "recordings").is_dir():
        pytest.skip(f"FSDD not found at {FSDD} (../shared/data next to the repo)")
    root = tmp_path_factory.mktemp("recipes") / "egs2"
    (root / "fsdd").mkdir(parents=True)
    (root / "TEMPLATE").symlink_to(REPO / "egs2" / "TEMPLATE")
    skip = shutil.ignore_patterns("data", "dump", "exp", "downloads", "RESULTS.*")
    for name in ("ssl1", "asr1", "slu1", "st1"):
        shutil.copytree(REPO / "egs2" / "fsdd" / name, root / "fsdd" / name, symlinks=True,
                        ignore=skip)
    return root / "fsdd"


@pytest.fixture(scope="module")
def asr_run(egs):
    start_time = time.time()
    r = run(egs / "asr1", f'--stop_stage 13 --local_data_opts "{DATA_OPTS}" '
                          f'--ssl_recipe_opts "{SSL_OPTS}" --asr_args "--max_epoch 1" '
                          '--frame_periods "20 80" --train_frame_periods "20 80" '
                          '--fixed_rate_periods 80 --pooled_periods 80')
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-5000:])
    return r, time.time() - start_time


def test_asr1_runs_ssl1_first_and_leaves_results(egs, asr_run):
    r, seconds = asr_run
    ssl = egs / "ssl1"
    assert (ssl / "exp/ssl_train_ofa_tiny/valid.loss.best.pth").is_file()
    assert (ssl / "exp/ssl_train_ofa_tiny/packed.zip").is_file()
    assert (ssl / "exp/hubert_train_hubert_tiny/valid.loss.best.pth").is_file()
    fixed_conf = (ssl / "exp/ssl_train_ofa_tiny_fixed80/config.yaml").read_text()
    assert "compression: fixed" in fixed_conf  # the fixed-rate student, beside the OFA one
    assert (ssl / "exp/ssl_train_ofa_tiny_fixed80/valid.loss.best.pth").is_file()
    assert "running ../ssl1/run.sh" in r.stderr
    for stage in range(1, 14):
        assert re.search(rf"\(asr.sh\) Stage {stage}[: ]", r.stderr), stage
    for stage in range(1, 12):
        assert re.search(rf"\(ssl.sh\) Stage {stage}[: ]", r.stderr), stage
    assert "progress: decoded test at p20" in r.stdout  # progress reaches the terminal
    asr = egs / "asr1"
    assert (asr / "data/train_sp/wav.scp").is_file()  # speed perturbation on
    # Statistics per frontend: 64-d OFA features (OFA and fixed-rate students), 80 log-mels.
    stats = {d.name: d for d in (asr / "exp/asr_stats_raw_en_word").iterdir() if d.is_dir()}
    assert set(stats) - {"logdir"} >= {"ofa_ssl_train_ofa_tiny", "ofa_ssl_train_ofa_tiny_fixed80"}
    dims = {name: np.load(d / "train/feats_stats.npz")["sum"].shape[0]
            for name, d in stats.items() if (d / "train/feats_stats.npz").is_file()}
    logmel = [n for n in dims if n.startswith("default_")]
    assert len(logmel) == 1 and dims[logmel[0]] == 80 and dims["ofa_ssl_train_ofa_tiny"] == 64
    # Baselines are decoded as trained: the fixed-rate student at 80 ms, log-mel once.
    def rates(exp):
        return {d.name for d in (asr / "exp" / exp).glob("decode_*/*") if d.name != "logdir"}

    assert rates("asr_train_asr_ofa_fixed80") == {"p80"} and rates("asr_train_asr_logmel") == {"native"}
    assert rates("asr_train_asr_ofa_pooled80") == {"p80"}  # pooled: its own period only
    assert rates("asr_train_asr_ofa_sampled") == {"p20", "p80"}  # one model, every period
    jitter = (asr / "exp/asr_train_asr_ofa_learned_rate_jitter/config.yaml").read_text()
    learnt = yaml.safe_load(jitter)["frontend_conf"]
    assert learnt["probe_jitter"] is True and not learnt["learnable_rate"]
    assert rates("asr_train_asr_ofa_learned_rate_jitter") == {f"p{learnt['frame_period']:g}"}
    text = (asr / "RESULTS.md").read_text()
    assert "## Summary: a model per frame period" in text
    assert "## Summary: OFA against the baselines" in text
    for exp in ("asr_train_asr_ofa_p20", "asr_train_asr_ofa_p80", "asr_train_asr_ofa_learned_rate",
                "asr_train_asr_ofa_fixed80", "asr_train_asr_logmel", "asr_train_asr_ofa_pooled80",
                "asr_train_asr_ofa_sampled", "asr_train_asr_ofa_learned_rate_jitter"):
        assert f"## exp/{exp}" in text
    pooled = result_rows(asr / "RESULTS.md", "The pooled rival: the OFA model at 20 ms, its "
                         "features average-pooled")
    assert {(c[0], c[1]) for c in pooled} == {("test", "80"), ("test_theo", "80")}
    for cells in pooled:  # OFA cheaper than the pooled rival, which pays the SSL at 20 ms
        assert float(cells[3]) < float(cells[5]) and "[" in cells[6]
    sampled = result_rows(asr / "RESULTS.md", "One model for every period: the period sampled "
                          "per training batch")
    assert {(c[0], c[1]) for c in sampled} == {(s, p) for s in ("test", "test_theo")
                                               for p in ("20", "80")}
    assert len(result_rows(asr / "RESULTS.md",
                           "The learnt rate against its jitter control")) == 2
    rows = result_rows(asr / "RESULTS.md")
    compare = {(c[0], c[1]): c for c in result_rows(
        asr / "RESULTS.md", "Summary: OFA against the baselines, each model at the period it "
        "was trained at") if len(c) == 8}  # OFA vs baselines, per period
    assert set(compare) == {(s, p) for s in ("test", "test_theo") for p in ("20", "80")}
    for (dset, period), cells in compare.items():
        assert float(cells[6]) >= 0 and "[" in cells[7]  # the log-mel floor, with an interval
        assert ("[" in cells[4]) == (period == "80")  # a fixed-rate student at 80 ms only
    summary = [c for c in rows if len(c) == 10]  # the summary names each row's experiment
    assert {(c[0], c[1], c[9]) for c in summary if c[1] in ("20", "80")} == {
        (s, p, f"asr_train_asr_ofa_{m}") for s in ("test", "test_theo")
        for p, m in (("20", "p20"), ("80", "p80"), ("80", "fixed80"), ("80", "pooled80"))}
    rows = [c for c in rows if len(c) == 9]
    fixed = [(c[0], c[1]) for c in rows if c[1] in ("20", "80")]
    assert sorted(fixed) == sorted([(s, p) for s in ("test", "test_theo") for p in ("20", "80")
                                    for _model in ("p20", "p80", "sampled")] +
                                   [(s, "80") for s in ("test", "test_theo")
                                    for _model in ("fixed80", "pooled80")])
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
    print(f"asr1 (with ssl1) end to end: {seconds:.0f} s")


def test_asr1_rerun_keeps_finished_work(egs, asr_run):
    """Stage 11 again resumes (nothing left to train) and adds a second seed; stages 12-13
    again, now with two decoding jobs, give the same scores (for one of the experiments,
    to save time), and the comparison gives the mean and spread over the seeds."""
    asr = egs / "asr1"
    exp = asr / "exp/asr_train_asr_ofa_p20"
    model = (exp / "valid.loss.best.pth").stat().st_mtime_ns
    before = result_rows(asr / "RESULTS.md", "exp/asr_train_asr_ofa_p20")
    assert len(before) == 4
    r = run(asr, '--stage 11 --stop_stage 13 --asr_configs conf/train_asr_ofa.yaml '
                 '--asr_args "--max_epoch 1" --frame_periods "20 80" --train_frame_periods 20 '
                 '--fixed_rate_periods "" --pooled_periods "" --seeds 2 --inference_nj 2')
    assert r.returncode == 0, r.stderr[-3000:]
    assert (exp / "valid.loss.best.pth").stat().st_mtime_ns == model  # resumed: nothing to do
    assert "--seed 1" in (asr / "exp/asr_train_asr_ofa_p20_seed1/train.log").read_text()
    assert list(exp.glob("decode_*/p20/test/split2/2/text"))  # decoded in two jobs, merged
    after = result_rows(asr / "RESULTS.md", "exp/asr_train_asr_ofa_p20")
    # The same scores (GMACs/s and RTF, the last columns, are measured on other utterances).
    assert [row[:7] for row in before] == [row[:7] for row in after]
    text = (asr / "RESULTS.md").read_text()
    assert "mean ± standard deviation over 2 seeds" in text
    compare = [c for c in result_rows(asr / "RESULTS.md") if len(c) == 8]
    assert {c[0] for c in compare} == {"test", "test_theo"} and all(" ± " in c[2] for c in compare)


def test_slu1_and_st1_train_decode_and_score(egs, asr_run):
    # Their log-mel floors too; no fixed-rate students (the asr run made only one, at 80 ms).
    common = (f'--local_data_opts "{DATA_OPTS}" --frame_periods "40" --stop_stage 13 '
              '--fixed_rate_periods "" --{task}_args "--max_epoch 1"')
    procs = {name: start(egs / name, common.format(task=name[:-1])) for name in ("slu1", "st1")}
    outputs = {name: p.communicate(timeout=1500)[0] for name, p in procs.items()}
    for name, p in procs.items():
        assert p.returncode == 0, outputs[name][-4000:]
        assert "running ../ssl1/run.sh" not in outputs[name]  # the OFA model is reused
    expected = {(s, p) for s in ("test", "test_theo") for p in ("40", "native")}
    slu = [c for c in result_rows(egs / "slu1/RESULTS.md") if len(c) == 8 and c[3].isdigit()]
    assert {(c[0], c[1].split(" ")[0]) for c in slu} == expected
    assert all(0.0 <= float(c[4]) <= 100.0 for c in slu)  # intent accuracy
    assert "Acc (%)" in (egs / "slu1/RESULTS.md").read_text()
    st = [c for c in result_rows(egs / "st1/RESULTS.md") if len(c) == 8 and c[3].isdigit()]
    assert {(c[0], c[1].split(" ")[0]) for c in st} == expected
    assert all(0.0 <= float(c[4]) <= 100.0 for c in st)  # BLEU
    text = (egs / "st1/RESULTS.md").read_text()
    assert "BLEU" in text and "synthetic" in text
