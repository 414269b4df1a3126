"""A warm Python for the recipe runs of the tests: one pre-imported server forks a child for
each ``python3 ...`` command a recipe runs, instead of a fresh interpreter importing torch and
ESPnet again (8 CPU-seconds each; the suite starts about 300 such processes).

The recipes' command lines stay exactly as they are. `start` runs the server and writes a
``python3``/``python`` shim into a directory that `recipe_env` (conftest.py) puts first on
``PATH``; the shim (this file, run with ``-I -S``: standard library only) sends its arguments,
working directory, environment and stdin/stdout/stderr to the server and waits. The server
forks; the child takes the client's descriptors, directory and environment and runs the
command as ``python3`` would (``-m module``, a script, or ``-c code``), then exits as the
interpreter does, short of its module teardown (`_exit`). What the shim cannot give a
faithful warm run gets the real interpreter (``exec``): other interpreter options, a module
the server has already imported, an environment that differs in what an interpreter reads
at start-up (``PYTHON*`` variables, thread counts, the import hook switch), a PYTHONPATH
holding another copy of an imported package, or no server.

Killing a shim kills its command: the child is its own process group and kills that group
when the shim's connection closes, so a recipe killed with its process group (the stage-kill
tests) leaves nothing behind. Signals the shim can catch are passed on to the child's group.

``ESPNET_OFA_TEST_WARM_PYTHON=0`` turns it off (every command a fresh interpreter).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys

SOCKET_ENV = "ESPNET_OFA_WARM_PYTHON"  # the server's socket, for the shim
REAL_PYTHON_ENV = "ESPNET_OFA_REAL_PYTHON"  # what the shim execs when it cannot use the server
SWITCH_ENV = "ESPNET_OFA_TEST_WARM_PYTHON"  # "0": no warm Python
# Emulated in the child; every other PYTHON* variable is read by a fresh interpreter at
# start-up, so a difference from the server's sends the command to the real interpreter
# (PYTHONPATH: see _fallback_reason).
EMULATED = {"PYTHONUNBUFFERED", "PYTHONIOENCODING", "PYTHONPATH"}
STARTUP_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ESPNET_OFA_NO_IMPORT_HOOK",
                     "CUDA_VISIBLE_DEVICES")
# Imported once by the server: what the recipes' processes import (not their __main__
# modules: runpy runs those afresh and warns when they are already imported).
PRELOAD = ("torch", "torchaudio", "espnet_ofa.registration", "espnet2.tasks.asr",
           "espnet2.tasks.slu", "espnet2.tasks.st", "espnet2.tasks.hubert",
           "espnet2.bin.asr_inference", "espnet_ofa.recipe.experiments")
_HEADER = struct.Struct("!Q")
# What the shim passes on to its command (SIGINT is Python's KeyboardInterrupt in the child).
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2)


# --- the shim ----------------------------------------------------------------------------


def _warm_command(args: list[str]) -> bool:
    """Whether a warm child runs ``python3 args`` as the real interpreter would."""
    if not args:
        return False
    if args[0] in ("-m", "-c"):
        return len(args) >= 2
    return not args[0].startswith("-")  # a script (``-`` and options: real interpreter)


def client(args: list[str]) -> None:
    """``python3 args`` through the server, or the real interpreter. Never returns."""
    real = os.environ[REAL_PYTHON_ENV]
    path = os.environ.get(SOCKET_ENV)
    if path and _warm_command(args):
        try:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(path)
            request = json.dumps({"args": args, "cwd": os.getcwd(), "env": dict(os.environ),
                                  "umask": _umask()}).encode()
            socket.send_fds(conn, [_HEADER.pack(len(request))], [0, 1, 2])
            conn.sendall(request)
            reply = conn.makefile("r")
            first = reply.readline().split()
        except OSError:
            first = []
        if first and first[0] == "pid":
            _wait_for_child(int(first[1]), reply)
    os.execv(real, [real, *args])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _wait_for_child(pid: int, reply) -> None:
    """Pass catchable signals on to the child's group; exit as it exited."""
    def forward(signum, _frame):
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:  # not its own group yet
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    for signum in FORWARDED:
        signal.signal(signum, forward)
    line = reply.readline().split()
    if not line or line[0] != "exit":
        sys.stderr.write(f"warm python: the server lost command {pid}\n")
        os._exit(1)
    code = int(line[1])
    if code < 0:  # killed by a signal: so is the shim, for the shell to see the same
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


# --- the server --------------------------------------------------------------------------


def _startup_environment(env: dict) -> dict:
    return {k: v for k, v in env.items()
            if (k.startswith("PYTHON") and k not in EMULATED) or k in STARTUP_VARIABLES}


def serve(path: str, preload=PRELOAD) -> int:
    """Import ``preload``, then fork a child for each request on ``path`` until the parent
    goes (the children exit in `_exit`)."""
    import importlib
    import select
    import threading

    # Listening before the imports: the first shims wait in the backlog instead of
    # starting real interpreters; if the server fails, they fall back when it closes.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(128)
    for name in preload:
        importlib.import_module(name)
    if threading.active_count() > 1:  # a fork would copy locks held by other threads
        sys.stderr.write(f"warm python: threads after the imports: {threading.enumerate()}\n")
        return 1
    import gc

    gc.freeze()  # the children's collections leave the imported objects (and their pages) alone
    startup = _startup_environment(os.environ)
    base_path = list(sys.path[1:])  # without this file's directory
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    children: dict[int, socket.socket] = {}
    parent = os.getppid()
    while os.getppid() == parent:
        ready, _, _ = select.select([listener, wake_r], [], [], 1.0)
        if wake_r in ready:
            os.read(wake_r, 512)
        if listener in ready:
            conn, _ = listener.accept()
            conn.settimeout(30)  # a shim sends at once; one that does not cannot stall the rest
            try:
                request, fds = _receive(conn)
            except (OSError, ValueError):
                conn.close()
                continue
            conn.settimeout(None)
            reason = _fallback_reason(request, startup)
            if reason is not None:  # to server.log: why a run was slow
                sys.stderr.write(f"warm python: fresh interpreter for {request['args'][:2]}: "
                                 f"{reason}\n")
                sys.stderr.flush()
                conn.sendall(b"fallback\n")
                conn.close()
                for fd in fds:
                    os.close(fd)
                continue
            pid = os.fork()
            if pid == 0:
                listener.close()
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.close(wake_r)
                os.close(wake_w)
                for other in children.values():
                    other.close()
                _child(conn, request, fds, base_path)  # exits
            for fd in fds:
                os.close(fd)
            children[pid] = conn
            conn.sendall(f"pid {pid}\n".encode())
        _reap(children)
    return 0


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
    if len(header) != _HEADER.size or len(fds) != 3:
        raise ValueError("short request")
    size, = _HEADER.unpack(header)
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ValueError("short request")
        data += chunk
    return json.loads(data), fds


def _fallback_reason(request: dict, startup: dict) -> str | None:
    """Why the command needs a fresh interpreter, or None when a warm child runs it faithfully."""
    args = request["args"]
    if args[0] == "-m" and args[1] in sys.modules:
        return f"module {args[1]} already imported"
    theirs = _startup_environment(request["env"])
    if theirs != startup:
        differ = sorted(k for k in {*theirs, *startup} if theirs.get(k) != startup.get(k))
        return f"start-up variables differ: {', '.join(differ)}"
    # A PYTHONPATH of its own is fine unless it holds another copy of an imported package.
    entries = [e for e in request["env"].get("PYTHONPATH", "").split(os.pathsep) if e]
    for entry in entries:
        for name, module in list(sys.modules.items()):
            where = getattr(module, "__file__", None)
            if "." in name or not where:
                continue
            for candidate in (os.path.join(entry, name, "__init__.py"),
                              os.path.join(entry, name + ".py")):
                if os.path.exists(candidate) and not os.path.samefile(candidate, where):
                    return f"PYTHONPATH entry {entry} holds another {name}"
    return None


def _reap(children: dict) -> None:
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is not None:
            try:
                conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
            except OSError:  # the shim is gone
                pass
            conn.close()


# --- a child: the command ----------------------------------------------------------------


def _child(conn: socket.socket, request: dict, fds: list[int], base_path: list[str]) -> None:
    import threading

    os.setpgid(0, 0)
    for signum in FORWARDED:
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"])
    _open_stdio()
    threading.Thread(target=_die_with_shim, args=(conn,), daemon=True).start()
    _reseed()
    _exit(_run(request["args"], base_path))


def _exit(code: int) -> None:
    """The interpreter's exit up to its module teardown: non-daemon threads joined, atexit
    handlers (logging's flush among them), std streams flushed. The teardown itself is
    skipped: it writes to every inherited object, copying the server's whole heap (~2 s),
    and what it would still flush (files a command left unclosed) is better lost loudly."""
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120  # as the interpreter exits when it cannot flush
    os._exit(code)


def _die_with_shim(conn: socket.socket) -> None:
    """The shim sends nothing more: end of stream means it is gone (killed)."""
    try:
        while conn.recv(1):
            pass
    except OSError:
        pass
    os.killpg(0, signal.SIGKILL)


def _open_stdio() -> None:
    """New sys.std* over fds 0-2, set up as a fresh interpreter would for this environment."""
    import io

    encoding, _, errors = os.environ.get("PYTHONIOENCODING", "").partition(":")
    encoding = encoding or "utf-8"
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    streams = []
    for fd, mode in ((0, "rb"), (1, "wb"), (2, "wb")):
        raw = io.FileIO(fd, mode, closefd=False)
        tty = raw.isatty()
        if mode == "rb":
            buffer = io.BufferedReader(raw)
        else:
            buffer = raw if unbuffered else io.BufferedWriter(raw)
        streams.append(io.TextIOWrapper(
            buffer, encoding=encoding,
            errors=errors or ("backslashreplace" if fd == 2 else "strict"),
            line_buffering=(fd == 2 or tty) and not unbuffered, write_through=unbuffered))
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams


def _reseed() -> None:
    """Fresh random states, as a new interpreter has (the server's would be shared)."""
    import random

    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        sys.modules["torch"].seed()


def _run(args: list[str], base_path: list[str]) -> int:
    import runpy

    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    rest = [p for p in base_path if p not in extra]
    try:
        if args[0] == "-m":
            sys.path[:] = [os.getcwd(), *extra, *rest]
            sys.argv = [args[1], *args[2:]]
            runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        elif args[0] == "-c":
            sys.path[:] = ["", *extra, *rest]
            sys.argv = ["-c", *args[2:]]
            exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})
        else:
            sys.path[:] = [os.path.dirname(os.path.realpath(args[0])), *extra, *rest]
            sys.argv = list(args)
            runpy.run_path(args[0], run_name="__main__")
    except SystemExit as exit_:
        return _exit_code(exit_.code)
    except KeyboardInterrupt:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:
        kind, error, trace = sys.exc_info()
        error.with_traceback(trace.tb_next)  # from the command's own frames
        sys.excepthook(kind, error, error.__traceback__)
        return 1
    return 0


def _exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


# --- the tests' side ----------------------------------------------------------------------


def thread_variables(environ) -> dict:
    """OMP/MKL thread counts as a recipe's commands get them: the recipes' path.sh sets
    ``OMP_NUM_THREADS`` to 1 when unset and ``MKL_NUM_THREADS`` to ``OMP_NUM_THREADS``."""
    omp = environ.get("OMP_NUM_THREADS") or "1"
    return {"OMP_NUM_THREADS": omp, "MKL_NUM_THREADS": environ.get("MKL_NUM_THREADS") or omp}


def start(directory: str, preload: tuple[str, ...] = PRELOAD) -> dict:
    """Start a server (its imports take ~10 s; shims wait for them) and write the shims into
    ``directory``; the environment variables that route a recipe's ``python3`` through it.
    The server ends with the process that started it.

    The thread counts are pinned for the server and the commands alike (`thread_variables`):
    they are start-up variables, so a server started without them (``pytest`` run directly)
    would send every command of a recipe, whose path.sh sets them, to a fresh interpreter.
    """
    import subprocess
    import time

    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "server.sock")
    real = os.path.join(os.path.dirname(sys.executable), "python3")
    threads = thread_variables(os.environ)
    log = open(os.path.join(directory, "server.log"), "ab")
    subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve", path, *preload],
                     stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                     env={**os.environ, **threads}, start_new_session=True)
    for _ in range(200):  # bound before its imports: a moment
        if os.path.exists(path):
            break
        time.sleep(0.05)
    for name in ("python3", "python"):
        shim = os.path.join(directory, name)
        with open(shim, "w") as f:
            f.write(f"#!/bin/sh\nexec '{real}' -I -S '{os.path.abspath(__file__)}' \"$@\"\n")
        os.chmod(shim, 0o755)
    return {SOCKET_ENV: path, REAL_PYTHON_ENV: real, "PATH": directory, **threads}


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        sys.exit(serve(sys.argv[2], tuple(sys.argv[3:])))
    client(sys.argv[1:])
