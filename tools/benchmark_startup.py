"""Start-up cost of the recipe steps that run as their own ``python -m`` process.

    python tools/benchmark_startup.py                  # every step, 3 runs each
    python tools/benchmark_startup.py --repeats 5 -k decode
    python tools/benchmark_startup.py --light           # the light steps only

A recipe run calls many small steps (check a decoding is done, merge split outputs, filter
a data dir, ...) as separate processes; one that imports torch or ESPnet pays seconds for
work that needs none of it. For each step this prints the median wall and CPU seconds of a
fresh process (CPU seconds are the steadier figure on a loaded machine) and whether it
imported torch, torchaudio or espnet2. Steps marked ``light`` must import none of them
(``tests/test_light_startup.py`` checks that); the others need torch for their real work
(resampling, MFCCs, the OFA model's options) and are shown for comparison.

The steps run on a small real workspace built in a temporary directory: FSDD connected
digits (8 kHz), an4_small test utterances (16 kHz) as a formatted data dir, and a decoding
split in two jobs, as stage 12 writes it. ``$SHARED_DATA`` (default ``../shared/data``
beside the repository) holds both corpora.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHARED_DATA", REPO.parent / "shared" / "data"))
HEAVY = ("torch", "torchaudio", "espnet2")

# Runs a command's main() as ``python -m`` would, then reports on one stderr line which of
# HEAVY it imported (the module names give the first place to look when one shows up).
_PROBE = """
import importlib, json, sys
module, argv = sys.argv[1], sys.argv[2:]
sys.argv = [module] + argv
try:
    status = importlib.import_module(module).main(argv)
except SystemExit as exit:
    status = exit.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
ours = sorted(m for m in sys.modules if m.startswith("espnet_ofa."))
sys.stderr.write("\\nstartup-probe: " + json.dumps({"heavy": heavy, "espnet_ofa": ours}) + "\\n")
sys.exit(status)
""" % (HEAVY,)
_MARK = "startup-probe: "


@dataclass
class Run:
    """One fresh process of a step."""

    returncode: int
    wall: float
    cpu: float  # user + system seconds of the process
    heavy: List[str]  # which of HEAVY it imported
    ours: List[str]  # the espnet_ofa modules it imported
    stdout: str
    stderr: str


def run_step(module: str, argv: Sequence[str], cwd: Path) -> Run:
    """Run ``python -m module argv`` in ``cwd`` in a fresh interpreter, with its imports."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _PROBE, module, *argv], cwd=cwd, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stderr, _, report = proc.stderr.rpartition(_MARK)
    if not _:
        raise RuntimeError(f"{module} {' '.join(argv)} died before reporting its imports "
                           f"(exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    found = json.loads(report)
    return Run(proc.returncode, wall, cpu, found["heavy"], found["espnet_ofa"], proc.stdout,
               stderr)


@dataclass(frozen=True)
class Step:
    """A recipe step as the shell calls it."""

    name: str
    module: str
    argv: Tuple[str, ...]
    light: bool  # must import none of HEAVY
    returncode: int = 0

    def run(self, workspace: Path) -> Run:
        return run_step(self.module, self.argv, workspace)


RECIPE, DECODE, CACHE = "espnet_ofa.bin.recipe", "espnet_ofa.bin.decode", "espnet_ofa.bin.feature_cache"
FSDD_DATA_ARGS = ("--task", "asr", "--fsdd", "{fsdd}", "--data_dir", "data", "--no_download",
                  "--train_takes", "1", "--dev_takes", "1", "--test_takes", "1",
                  "--heldout_takes", "1", "--speakers", "george,jackson")
DECODE_REQUEST = ("--task", "asr", "--train_config", "exp/asr/config.yaml",
                  "--model_file", "exp/asr/valid.acc.best.pth", "--data_dirs", "dump/raw/an4",
                  "--out_dir", "exp/asr/decode", "--frame_periods", "20", "80",
                  "--num_splits", "2")
CONF = REPO / "egs2" / "fsdd" / "asr1" / "conf"


def steps(fsdd: Path) -> List[Step]:
    """The steps, in an order in which each finds what it reads (see `build_workspace`)."""
    fsdd_args = tuple(a.format(fsdd=fsdd) for a in FSDD_DATA_ARGS)
    s = [
        Step("recipe fsdd_data", RECIPE, ("fsdd_data",) + fsdd_args, light=True),
        Step("recipe speed_perturb (8 kHz)", RECIPE, (
            "speed_perturb", "--src", "data/dev", "--dst", "data/dev_sp", "--factors", "0.9",
            "1.0", "1.1"), light=False),
        Step("recipe format (8 -> 16 kHz)", RECIPE, (
            "format", "--src", "data/dev", "--dst", "dump/raw/org/dev"), light=False),
        Step("recipe format (16 kHz)", RECIPE, (  # two sets in one process, as stage 3
            "format", "--src", "data/an4", "data/an4", "--dst", "dump/raw/org/an4",
            "dump/raw/org/an4_again", "--required", "wav.scp", "text"), light=True),
        Step("recipe filter", RECIPE, (
            "filter", "--src", "dump/raw/org/an4", "--dst", "dump/raw/an4"), light=True),
        Step("recipe token_list", RECIPE, (
            "token_list", "--text", "dump/raw/an4/text", "--out", "tokens.txt"), light=True),
        Step("recipe kmeans_labels", RECIPE, (
            "kmeans_labels", "--data_dir", "dump/raw/an4", "--out", "exp/km/text.km",
            "--n_clusters", "4"), light=False),
        Step("recipe plan", RECIPE, (
            "plan", "--task", "asr", "--configs", str(CONF / "train_asr_ofa.yaml"),
            "--ofa_model", "exp/ssl/valid.loss.best.pth", "--train_frame_periods", "20",
            "80"), light=True),
        Step("recipe trained_range", RECIPE, (
            "trained_range", "--exp_dir", "exp/ssl", "--data_dir", "dump/raw/an4"),
             light=False),
        Step("recipe resume_check", RECIPE, ("resume_check", "--exp_dir", "exp/killed"),
             light=True),
        Step("decode --done check (not done)", DECODE, DECODE_REQUEST + (
            "--frame_periods", "20", "40", "--done", "check"), light=True, returncode=1),
        Step("decode --merge", DECODE, (
            "--merge", "exp/asr/decode/p20/an4", "exp/asr/decode/p80/an4",
            "--num_splits", "2"), light=True),
        Step("decode --done mark", DECODE, DECODE_REQUEST + ("--done", "mark"), light=True),
        Step("decode --done check (done)", DECODE, DECODE_REQUEST + ("--done", "check"),
             light=True),
        Step("recipe score_all", RECIPE, (
            "score_all", "--task", "asr", "--decode_dir", "exp/asr/decode", "--data_root",
            "dump/raw"), light=True),
        Step("recipe results", RECIPE, (
            "results", "--exp_dirs", "exp/asr", "--out", "RESULTS.md", "--smoke", "true"),
             light=False),
        Step("feature_cache plan", CACHE, ("plan", "--plan", "exp/plan.tsv"), light=False),
    ]
    return s


def build_workspace(root: Path, an4: Path) -> None:
    """What the steps read that no earlier step writes:

    - ``data/an4``: the an4_small test utterances as a 16 kHz data dir;
    - ``exp/asr``: a trained experiment's files (their bytes are only hashed) and its
      decoding in two split jobs, as ``decode_periods`` writes them;
    - ``exp/plan.tsv``: an experiment plan; ``exp/killed``: a training killed while saving;
    - ``exp/ssl``: a student pretrained in ``frame_period`` mode (nothing to measure).
    """
    an4_dir = root / "data" / "an4"
    an4_dir.mkdir(parents=True)
    utts = {}
    for line in (an4 / "test.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        utts[Path(item["audio"]).stem] = (str((an4 / item["audio"]).resolve()), item["text"])
    for name, column in (("wav.scp", 0), ("text", 1)):
        (an4_dir / name).write_text("".join(f"{u} {v[column]}\n" for u, v in sorted(utts.items())))
    (an4_dir / "utt2spk").write_text("".join(f"{u} {u}\n" for u in sorted(utts)))
    ssl = root / "exp" / "ssl"
    ssl.mkdir(parents=True)
    (ssl / "config.yaml").write_text("rate_conf:\n  mode: frame_period\n  low: 20.0\n"
                                     "  high: 90.0\nstudent_conf: {}\n")
    killed = root / "exp" / "killed"  # a training killed while it saved its third epoch
    killed.mkdir(parents=True)
    whole = io.BytesIO()
    with zipfile.ZipFile(whole, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00." * 100)
    (killed / "checkpoint.pth").write_bytes(whole.getvalue())
    (killed / "3epoch.pth").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    exp = root / "exp" / "asr"
    exp.mkdir(parents=True)
    (exp / "config.yaml").write_text("frontend: default\nseed: 0\n")
    (exp / "valid.acc.best.pth").write_bytes(b"\0" * 1024)
    for period in (20, 80):
        ordered = sorted(utts)
        for job in (1, 2):
            out = exp / "decode" / f"p{period}" / "an4" / "split2" / str(job)
            out.mkdir(parents=True)
            mine = ordered[job - 1::2]
            (out / "text").write_text("".join(f"{u} {utts[u][1]}\n" for u in mine))
            (out / "token").write_text("".join(f"{u} {utts[u][1]}\n" for u in mine))
            seconds = sum(sf.info(utts[u][0]).duration for u in mine)
            frames = int(seconds * 50)
            info = {"task": "asr", "test_set": "an4", "model_file": str(exp / "valid.acc.best.pth"),
                    "train_frame_period": None, "frontend": "default", "ssl_model": None,
                    "seed": 0, "variant": None, "compression": None, "ssl_period_range": None,
                    "rate": f"p{period}", "frame_period": float(period), "learned": False,
                    "achieved_period": 20.0, "num_utts": len(mine), "audio_seconds": seconds,
                    "decode_seconds": seconds / 10, "rtf": 0.1, "frontend_seconds": 0.0,
                    "encoder_seconds": 0.0, "frames_20ms": frames,
                    "frames_out": frames * 20 // period, "macs": 10 ** 9 * len(mine),
                    "macs_audio_seconds": seconds, "gmacs_per_second": 1.0}
            (out / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    (root / "exp" / "plan.tsv").write_text(
        f"exp/asr_ofa\t{CONF / 'train_asr_ofa.yaml'}\tofa_p20\texp/ssl/valid.loss.best.pth\t"
        "--frontend_conf model=exp/ssl/valid.loss.best.pth --frontend_conf frame_period=20\n")


def measure(root: Path, step: Step, repeats: int) -> List[Run]:
    """``repeats`` fresh processes of ``step``, one after the other."""
    runs = []
    for _ in range(repeats):
        run = step.run(root)
        if run.returncode != step.returncode:
            raise RuntimeError(f"{step.name}: exit {run.returncode}, expected "
                               f"{step.returncode}:\n{run.stderr[-2000:]}")
        runs.append(run)
    return runs


def row(step: Step, runs: Sequence[Run]) -> str:
    heavy = set().union(*(r.heavy for r in runs))
    return (f"{step.name:34} {statistics.median(r.wall for r in runs):7.2f} "
            f"{statistics.median(r.cpu for r in runs):6.2f}  "
            f"{'yes' if 'torch' in heavy else 'no':5} {'yes' if 'espnet2' in heavy else 'no':7} "
            f"{'yes' if step.light else 'no'}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("-k", dest="keyword", default="",
                        help="time only the steps whose name has this")
    parser.add_argument("--light", action="store_true",
                        help="only the light steps (they read no output of the others)")
    parser.add_argument("--workdir", default=None, help="keep the workspace here (new dir)")
    args = parser.parse_args(argv)
    for corpus in ("fsdd/recordings", "an4_small/test.jsonl"):
        if not (SHARED_DATA / corpus).exists():
            parser.error(f"{SHARED_DATA / corpus} not found: set $SHARED_DATA")
    with tempfile.TemporaryDirectory(prefix="startup_") as tmp:
        root = Path(args.workdir or tmp)
        root.mkdir(parents=True, exist_ok=True)
        build_workspace(root, SHARED_DATA / "an4_small")
        print(f"{'step':34} {'wall s':>7} {'cpu s':>6}  {'torch':5} {'espnet2':7} light",
              flush=True)
        for step in steps(SHARED_DATA / "fsdd"):
            if args.light and not step.light:
                continue
            if args.keyword in step.name:
                print(row(step, measure(root, step, args.repeats)), flush=True)
            else:  # run once all the same: later steps read what it writes
                measure(root, step, 1)
    print(f"median of {args.repeats} fresh processes per step; python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
