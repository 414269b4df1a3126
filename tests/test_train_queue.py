"""s2t.sh stage 11's trainings, several per process and shared out among processes
(``espnet_ofa.bin.train_queue``), with a stand-in for ESPnet's ``<task>_train`` entry: each
training runs once, in whichever process is free, with its output in its own log."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from espnet_ofa.bin import train_queue
from espnet_ofa.recipe.experiments import learnt_period_placeholder

REPO = Path(__file__).resolve().parents[1]

# Like ESPnet's trainers: logging configured by the first training of the process only,
# an epoch line on stdout, an exception when training fails. ``--wait_for F`` blocks until
# file F exists (another training started), ``--start F`` creates F.
FAKE_ENTRY = textwrap.dedent("""
    import json, logging, os, time
    from pathlib import Path

    def main(cmd=None):
        opts = dict(zip(cmd[::2], cmd[1::2]))
        out = Path(opts["--output_dir"])
        out.mkdir(parents=True, exist_ok=True)
        logging.basicConfig(level="INFO", format="%(levelname)s: %(message)s")
        logging.info("training %s", out)
        if "--start" in opts:
            Path(opts["--start"]).touch()
        if "--wait_for" in opts:
            deadline = time.time() + 60
            while not Path(opts["--wait_for"]).exists():
                assert time.time() < deadline, "the other training never started"
                time.sleep(0.05)
        print("1epoch results: [valid] loss=1.0", flush=True)
        if opts.get("--fail") == "true":
            raise RuntimeError("the loss diverged")
        (out / "ran.json").write_text(json.dumps({"pid": os.getpid(), "opts": opts}))
""")


@pytest.fixture
def entry(tmp_path, monkeypatch):
    """The stand-in entry module's directory, importable here and in subprocesses."""
    (tmp_path / "fake_train.py").write_text(FAKE_ENTRY)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _runs(root: Path, options: dict) -> list:
    """``--run`` pairs for ``{exp name: [options]}``, each exp training into root/exp."""
    runs = []
    for name, extra in options.items():
        exp = root / name
        (exp / "logdir").mkdir(parents=True)
        args = exp / "logdir" / "train.args"
        args.write_text("\n".join(["--output_dir", str(exp), *extra]) + "\n")
        runs += ["--run", str(args), str(exp / "train.log")]
    return runs


def _control_queue(tmp_path: Path, learned_options: list) -> tuple:
    """(exp root, empty queue dir, --run pairs, learnt exp) of a learnt-rate training and
    its jitter control, queued in that order."""
    root, queue = tmp_path / "exp", tmp_path / "queue"
    queue.mkdir()
    learnt = root / "learned"
    runs = _runs(root, {"learned": learned_options,
                        "control": ["--frontend_conf",
                                    f"frame_period={learnt_period_placeholder(learnt)}"]})
    return root, queue, runs, learnt


def test_processes_share_the_queue_each_training_once_with_its_own_log(entry, tmp_path):
    root, queue = tmp_path / "exp", tmp_path / "queue"
    queue.mkdir()
    # a and b can only finish when both run at once: in two processes.
    runs = _runs(root, {"a": ["--start", str(tmp_path / "a.started"),
                              "--wait_for", str(tmp_path / "b.started")],
                        "b": ["--start", str(tmp_path / "b.started"),
                              "--wait_for", str(tmp_path / "a.started")],
                        "c": ["--fail", "true"],
                        "d": []})
    cmd = [sys.executable, "-m", "espnet_ofa.bin.train_queue", "--entry", "fake_train",
           "--queue_dir", str(queue), *runs]
    env = {**os.environ, "PYTHONPATH": f"{entry}:{REPO}"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outs  # the process that ran c failed, the other did not

    ran = {name: json.loads((root / name / "ran.json").read_text()) for name in "abd"}
    assert ran["a"]["pid"] != ran["b"]["pid"]
    assert not (root / "c" / "ran.json").exists()
    assert sorted(p.name for p in queue.glob("*.claimed")) == [f"{i}.claimed" for i in range(4)]
    for name in "abd":
        log = (root / name / "train.log").read_text()
        assert log.startswith(f"# python3 -m fake_train --output_dir {root / name}")
        assert f"INFO: training {root / name}\n" in log  # its own log lines, no one else's
        assert sum(f"training {root / other}\n" in log for other in "abcd") == 1
        assert log.rstrip().splitlines()[-1].startswith("# Ended (code 0)")
    failed = (root / "c" / "train.log").read_text()
    assert "RuntimeError: the loss diverged" in failed
    assert failed.rstrip().splitlines()[-1].startswith("# Ended (code 1)")
    stdout = "".join(out for out, _ in outs)
    stderr = "".join(err for _, err in outs)
    assert stdout.count("1epoch results") == 4  # progress reaches the job runner too
    assert f"error: training failed; log: {root / 'c' / 'train.log'}" in stderr


def test_a_jitter_control_gets_the_period_learnt_before_it(entry, tmp_path, monkeypatch):
    root, queue, runs, learnt = _control_queue(tmp_path, [])
    asked = []
    monkeypatch.setattr(train_queue, "learnt_period_of",
                        lambda model: lambda exp: asked.append((exp, model)) or 52.25)
    assert train_queue.main(["--entry", "fake_train", "--queue_dir", str(queue),
                             "--learnt_model", "valid.acc.best.pth", *runs]) == 0
    opts = json.loads((root / "control" / "ran.json").read_text())["opts"]
    assert opts["--frontend_conf"] == "frame_period=52.25"
    assert asked == [(str(learnt), "valid.acc.best.pth")]


def test_a_jitter_control_fails_with_the_training_it_copies(entry, tmp_path, monkeypatch):
    root, queue, runs, learnt = _control_queue(tmp_path, ["--fail", "true"])
    monkeypatch.setattr(train_queue, "learnt_period_of", lambda model: lambda exp: 40.0)
    assert train_queue.main(["--entry", "fake_train", "--queue_dir", str(queue), *runs]) == 1
    assert not (root / "control" / "ran.json").exists()
    log = (root / "control" / "train.log").read_text()
    assert "learnt period of failed" in log and str(learnt / "train.log") in log


def test_bad_queues_are_refused_before_training(entry, tmp_path, capsys):
    root, queue = tmp_path / "exp", tmp_path / "queue"
    learnt = root / "learned"
    # The control first: it would wait for a training queued after it.
    runs = _runs(root, {"control": ["--frontend_conf",
                                    f"frame_period={learnt_period_placeholder(learnt)}"],
                        "learned": []})
    queue.mkdir()
    assert train_queue.main(["--entry", "fake_train", "--queue_dir", str(queue), *runs]) == 1
    assert "queued after it: queue that training first" in capsys.readouterr().err
    assert not list(queue.iterdir())
    missing = ["--run", str(tmp_path / "none.args"), str(tmp_path / "none.log")]
    assert train_queue.main(["--entry", "fake_train", "--queue_dir", str(queue), *missing]) == 1
    assert "none.args not found" in capsys.readouterr().err
    runs = _runs(tmp_path / "other", {"a": []})
    assert train_queue.main(["--entry", "fake_train", "--queue_dir",
                             str(tmp_path / "no_queue"), *runs]) == 1
    assert "make it (empty) before" in capsys.readouterr().err


def test_a_control_stops_waiting_when_the_process_training_its_rate_died(entry, tmp_path):
    root, queue, runs, learnt = _control_queue(tmp_path, [])
    # The learnt-rate training was claimed by a process that was killed before it ended.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (queue / "0.claimed").write_text(f"{socket.gethostname()} {gone}\n")
    assert train_queue.main(["--entry", "fake_train", "--queue_dir", str(queue), *runs]) == 1
    assert "learnt period of failed" in (root / "control" / "train.log").read_text()
    assert not (root / "learned" / "ran.json").exists()
