"""Several ESPnet trainings in one process, shared out among processes (s2t.sh stage 11).

    python -m espnet_ofa.bin.train_queue --entry espnet2.bin.asr_train \\
        --queue_dir exp/logdir/train_queue \\
        --run exp/a/logdir/train.args exp/a/train.log \\
        --run exp/b/logdir/train.args exp/b/train.log [--learnt_model valid.loss.best.pth]

Each args file holds the options of one ``python -m <entry>`` run, one option or value per
line; the run's output goes into its log (with the command, start and end lines the job
runners write) and, as with them, to this process' stdout. Started N times with the same
arguments (``run_local.sh JOB=1:N``), the processes take the trainings in order, each the
next one no process has taken (a claim file in ``--queue_dir``), so N trainings run at a
time as N separate commands would; ESPnet's start-up (about 10 s of imports) is paid once
per process instead of once per training. Before a training starts, damaged checkpoints of
its output directory are set aside (`set_aside_damaged_checkpoints`).

An option holding ``{learnt_period:<exp dir>}`` (a jitter control) waits for the training
whose ``--output_dir`` is that directory, when it is in the queue, and then gets the period
its ``--learnt_model`` learnt. A failed training does not stop the others; the exit status
is 1 if any failed, and the failed ones are named with their logs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import importlib
import os
import select
import shlex
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

from espnet_ofa.bin import USER_ERRORS, read_args_file, reports_errors
from espnet_ofa.recipe.experiments import fill_learnt_period, learnt_period_exps

DONE, FAILED = "done", "failed"
POLL_S = 1.0  # how often a training waits on another process' training


@dataclass
class Training:
    """One queued run: its position, options and log."""

    index: int
    options: List[str]
    log: Path

    @property
    def output_dir(self) -> Optional[Path]:
        """The value of its ``--output_dir`` (the last one, as argparse takes it)."""
        dirs = [self.options[i + 1] for i, o in enumerate(self.options[:-1])
                if o == "--output_dir"]
        return Path(dirs[-1]) if dirs else None


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry", required=True,
                        help="the module whose main(cmd=...) trains (espnet2.bin.asr_train)")
    parser.add_argument("--queue_dir", type=Path, required=True,
                        help="shared by the processes of one stage run: empty at its start")
    parser.add_argument("--run", nargs=2, action="append", required=True,
                        metavar=("ARGS_FILE", "LOG"), help="one training (repeat, in order)")
    parser.add_argument("--learnt_model", default="valid.loss.best.pth",
                        help="the model file a learnt period is read from")
    return parser


def read_queue(runs: List[List[str]]) -> List[Training]:
    """The trainings of ``--run`` pairs; a learnt period must come from an earlier one."""
    queue = [Training(i, read_args_file(Path(args), "training"), Path(log))
             for i, (args, log) in enumerate(runs)]
    position = {t.output_dir: t.index for t in queue if t.output_dir is not None}
    for t in queue:
        for exp in learnt_period_exps(" ".join(t.options)):
            if position.get(Path(exp), -1) > t.index:
                raise ValueError(f"{t.log}: its options use the period learnt in {exp}, "
                                 "which is queued after it: queue that training first")
    return queue


def claim(queue_dir: Path, training: Training) -> bool:
    """Take ``training`` for this process (the claim names its host and pid); False when
    another process has it."""
    try:
        fd = os.open(queue_dir / f"{training.index}.claimed",
                     os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(f"{socket.gethostname()} {os.getpid()}\n")
    return True


def _claimer_died(queue_dir: Path, training: Training) -> bool:
    """Whether the process that claimed ``training`` is gone (known on its own host only)."""
    try:
        host, pid = (queue_dir / f"{training.index}.claimed").read_text().split()
    except (OSError, ValueError):  # being written: the claimer is alive
        return False
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, run by another user
        pass
    return False


def mark(queue_dir: Path, training: Training, state: str) -> None:
    (queue_dir / f"{training.index}.{state}").touch()


def wait_for(queue_dir: Path, training: Training) -> str:
    """Block until ``training`` (claimed before the caller's) has ended: DONE or FAILED; a
    training whose process died (killed) without marking it has FAILED."""
    while True:
        for state in (DONE, FAILED):
            if (queue_dir / f"{training.index}.{state}").exists():
                return state
        if _claimer_died(queue_dir, training):
            return DONE if (queue_dir / f"{training.index}.{DONE}").exists() else FAILED
        time.sleep(POLL_S)


@contextlib.contextmanager
def output_into(log: Path) -> Iterator[None]:
    """While the block runs, everything written to file descriptors 1 and 2 (ESPnet's log
    handler, progress bars, data loader workers) goes into ``log`` and to the original
    stdout, as the job runners' ``tee`` would."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    read_end, write_end = os.pipe()
    stop = threading.Event()

    def copy(out) -> None:
        while True:
            ready, _, _ = select.select([read_end], [], [], 0.1)
            if ready:
                data = os.read(read_end, 65536)
                if not data:
                    return
                out.write(data)
                out.flush()
                os.write(saved[0], data)
            elif stop.is_set():  # drained; a leftover child may still hold the pipe
                return

    with open(log, "ab") as out:
        thread = threading.Thread(target=copy, args=(out,), daemon=True)
        thread.start()
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            stop.set()
            thread.join()
            os.close(read_end)
            for fd in saved:
                os.close(fd)


def train(entry: Callable[..., object], training: Training, command: str) -> int:
    """Run one training through ``entry`` with its output in its log, the command, start
    and end lines around it; its exit status."""
    training.log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    training.log.write_text(f"# {command} {shlex.join(training.options)}\n"
                            f"# Started at {datetime.datetime.now():%c}\n#\n",
                            encoding="utf-8")
    status = 0
    with output_into(training.log):
        try:
            entry(cmd=training.options)
        except SystemExit as end:  # argparse's exit on a bad option, for one
            status = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
        except Exception:  # noqa: BLE001 - the next training still runs; the log has it
            traceback.print_exc()
            status = 1
    with training.log.open("a", encoding="utf-8") as log:
        log.write(f"# Accounting: time={round(time.monotonic() - started)} "
                  f"threads={os.environ.get('OMP_NUM_THREADS', '')}\n"
                  f"# Ended (code {status}) at {datetime.datetime.now():%c}\n")
    gc.collect()  # the model and its data loaders before the next one builds its own
    return status


def learnt_period_of(model: str) -> Callable[[str], float]:
    """The period (ms) an experiment's ``model`` file learnt, as a function of its dir."""
    def period_of(exp: str) -> float:
        from espnet_ofa.frontend.ofa import learnt_period

        return learnt_period(Path(exp) / "config.yaml", Path(exp) / model)

    return period_of


def run_queue(entry_name: str, queue_dir: Path, queue: List[Training], learnt_model: str,
              ) -> List[Training]:
    """Run the trainings this process claims, in order; the failed ones."""
    from espnet_ofa.recipe.resume import set_aside_damaged_checkpoints

    entry = importlib.import_module(entry_name).main
    by_output: Dict[Path, Training] = {t.output_dir: t for t in queue if t.output_dir}
    period_of = learnt_period_of(learnt_model)
    failed = []
    for training in queue:
        if not claim(queue_dir, training):
            continue
        waited = [by_output[Path(e)] for e in learnt_period_exps(" ".join(training.options))
                  if Path(e) in by_output]
        lost = [t for t in waited if wait_for(queue_dir, t) == FAILED]
        try:
            if lost:
                raise ValueError(f"the training it copies the learnt period of failed: "
                                 f"see {lost[0].log}")
            training.options = [fill_learnt_period(o, period_of) for o in training.options]
        except USER_ERRORS as err:
            training.log.parent.mkdir(parents=True, exist_ok=True)
            training.log.write_text(f"error: {err}\n", encoding="utf-8")
            status = 1
        else:
            if training.output_dir is not None:
                for note in set_aside_damaged_checkpoints(training.output_dir):
                    print(f"progress: {note}", flush=True)
            print(f"progress: training {training.output_dir} (log {training.log})", flush=True)
            status = train(entry, training, f"python3 -m {entry_name}")
        mark(queue_dir, training, DONE if status == 0 else FAILED)
        if status != 0:
            failed.append(training)
    return failed


@reports_errors()
def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    queue = read_queue(args.run)  # every args file checked before ESPnet starts
    if not args.queue_dir.is_dir():
        raise FileNotFoundError(f"{args.queue_dir} not found: make it (empty) before "
                                "starting the processes that share the queue")
    failed = run_queue(args.entry, args.queue_dir, queue, args.learnt_model)
    for training in failed:
        print(f"error: training failed; log: {training.log}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
