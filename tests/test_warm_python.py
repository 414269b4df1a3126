"""The warm Python of the recipe tests (tests/warm_python.py): a ``python3`` command through
it behaves as in a fresh interpreter (output, exit status, arguments, directory, stdin,
signals), and what it cannot run faithfully goes to a fresh interpreter."""

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import warm_python
from conftest import REPO, recipe_env

# Whether the command ran in the server's child: torch is imported before the command runs.
WARM_PROBE = "import sys; print('WARM' if 'torch' in sys.modules else 'FRESH')"

pytestmark = pytest.mark.skipif(os.environ.get(warm_python.SWITCH_ENV) == "0",
                                reason=f"{warm_python.SWITCH_ENV}=0: no warm Python")


def python3(args, env=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["python3", *args], env={**recipe_env(), **(env or {})},
                          capture_output=True, text=True, timeout=120, **kwargs)


def test_commands_run_warm_with_their_arguments_directory_and_environment(tmp_path):
    script = tmp_path / "tool.py"
    script.write_text("import os, sys\n" + WARM_PROBE + "\n"
                      "print(sys.argv, os.getcwd(), os.environ['ODD'], sys.path[0])\n"
                      "sys.exit(int(sys.argv[1]))\n")
    (tmp_path / "mod_here.py").write_text(script.read_text())
    by_script = python3([str(script), "3", "x y"], env={"ODD": "é"}, cwd=tmp_path)
    assert by_script.returncode == 3, by_script.stderr
    assert by_script.stdout.splitlines() == [
        "WARM", f"[{str(script)!r}, '3', 'x y'] {tmp_path} é {tmp_path}"]
    by_module = python3(["-m", "mod_here", "0"], env={"ODD": "1"}, cwd=tmp_path)
    assert by_module.returncode == 0, by_module.stderr
    assert by_module.stdout.splitlines() == [
        "WARM", f"[{str(tmp_path / 'mod_here.py')!r}, '0'] {tmp_path} 1 {tmp_path}"]
    by_code = python3(["-c", WARM_PROBE + "; import sys; print(sys.argv); sys.exit('bad')",
                       "a"])
    assert (by_code.returncode, by_code.stdout, by_code.stderr) == (1, "WARM\n['-c', 'a']\n",
                                                                    "bad\n")


def test_stdin_is_the_shims_and_errors_end_as_in_a_fresh_interpreter(tmp_path):
    echo = python3(["-c", WARM_PROBE + "; import sys; print(sys.stdin.read().upper())"],
                   input="piped\n")
    assert echo.stdout == "WARM\nPIPED\n\n"
    failed = python3(["-c", "def broken():\n    raise ValueError('no good')\nbroken()"])
    assert failed.returncode == 1
    assert failed.stderr.startswith("Traceback (most recent call last):\n")
    assert "warm_python" not in failed.stderr and failed.stderr.endswith("ValueError: no good\n")
    missing = python3(["-m", "no_such_module_here"])
    assert missing.returncode == 1 and "No module named no_such_module_here" in missing.stderr


def test_what_a_warm_child_cannot_run_faithfully_gets_a_fresh_interpreter():
    assert python3(["-c", WARM_PROBE]).stdout == "WARM\n"
    # Read at an interpreter's start-up: a different value needs a fresh one.
    assert python3(["-c", WARM_PROBE], env={"PYTHONHASHSEED": "7"}).stdout == "FRESH\n"
    assert python3(["-c", WARM_PROBE], env={"ESPNET_OFA_NO_IMPORT_HOOK": "1"}).stdout == "FRESH\n"
    # Interpreter options, and a module the server has already imported (run warm, runpy
    # would warn that it may behave unpredictably).
    assert python3(["-B", "-c", WARM_PROBE]).stdout == "FRESH\n"
    imported = python3(["-m", "espnet2.tasks.asr"])
    assert (imported.returncode, imported.stdout) == (0, "")
    assert "RuntimeWarning" not in imported.stderr, imported.stderr
    env = recipe_env()
    env.pop(warm_python.SOCKET_ENV)  # no server: the shim is a plain python3
    plain = subprocess.run(["python3", "-c", WARM_PROBE], env=env, capture_output=True, text=True)
    assert plain.stdout == "FRESH\n"


def test_a_recipes_commands_run_warm_when_pytest_is_started_without_thread_counts(
        tmp_path, monkeypatch):
    # pytest run directly, not through tools/test.sh: the recipes' path.sh sets the thread
    # counts the server did not have, and a difference in them means a fresh interpreter.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    warm = warm_python.start(str(tmp_path / "server"), preload=("torch",))
    path = f"{warm.pop('PATH')}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    command = f". {shlex.quote(str(REPO / 'egs2/TEMPLATE/path.sh'))} && python3 -c " \
        f"{shlex.quote(WARM_PROBE)}"
    ran = subprocess.run(["bash", "-c", command], env={**os.environ, **warm, "PATH": path},
                         capture_output=True, text=True, timeout=120)
    assert (ran.returncode, ran.stdout) == (0, "WARM\n"), ran.stderr
    log = (tmp_path / "server" / "server.log").read_text()
    assert "fresh interpreter" not in log, log


def _wait_for(path: Path) -> None:
    for _ in range(600):
        if path.is_file() and path.read_text().strip():
            return
        time.sleep(0.05)
    pytest.fail(f"{path} never written")


def _gone(pid: int) -> bool:
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_shim_takes_its_command_and_the_commands_children_with_it(tmp_path, signum):
    code = ("import os, subprocess, sys, time\n"
            "child = subprocess.Popen(['sleep', '300'])\n"
            "open(sys.argv[1], 'w').write(f'{os.getpid()} {child.pid}')\n"
            "time.sleep(300)\n")
    pids = tmp_path / "pids"
    shim = subprocess.Popen(["python3", "-c", code, str(pids)], env=recipe_env())
    _wait_for(pids)
    command, grandchild = map(int, pids.read_text().split())
    assert command != shim.pid  # it did run in the server's child
    shim.send_signal(signum)
    assert shim.wait(timeout=30) == -signum
    assert _gone(command) and _gone(grandchild)
