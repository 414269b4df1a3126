"""Command-line entry points: ``python -m espnet_ofa.bin.<name>``."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple, Type, TypeVar

# What the package raises when the user can fix the input: its own errors (bad data dirs,
# checkpoints, archives, options; all ValueErrors) and missing files. Their messages name
# the problem and the fix, so a command shows the message alone, not a traceback.
USER_ERRORS = (ValueError, FileNotFoundError)


# The placeholder of the job number in args files (the job runners' own: run_local.sh).
JOB_PLACEHOLDER = "JOB"


def read_args_file(path: Path, what: str, job: Optional[int] = None) -> List[str]:
    """The options of one ``what`` run in ``path``, one option or value per line (a value
    may hold spaces); with ``job``, ``JOB`` in them replaced by it. For the commands that
    run several jobs in one process (ESPnet's start-up paid once)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: write the options of one {what}, one per "
                                "line (the recipe's stage does)")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise ValueError(f"{path} is empty: it must hold the options of one {what}")
    if job is None:
        return lines
    return [line.replace(JOB_PLACEHOLDER, str(job)) for line in lines]


A = TypeVar("A")
B = TypeVar("B")


def paired(firsts: Sequence[A], seconds: Sequence[B], first: str, second: str
           ) -> List[Tuple[A, B]]:
    """The items of two options given as parallel lists (``--src a b --dst x y``), in
    pairs; lists of different lengths are an error naming both options."""
    if len(firsts) != len(seconds):
        raise ValueError(f"{len(firsts)} --{first} but {len(seconds)} --{second}: give one "
                         f"--{second} per --{first}, in order")
    return list(zip(firsts, seconds))


# The commands' log lines: time, level and module.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """The commands' log lines (`LOG_FORMAT`) on stderr, at ``level`` (--log_level)."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)


def reports_errors(*extra: Type[BaseException], exit_status: Optional[int] = None
                   ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command's ``main``: `USER_ERRORS` (and ``extra``) print as one
    ``error: <message>`` line on stderr and ``main`` returns exit status 1; with
    ``exit_status``, ``main`` exits with it instead (SystemExit, as argparse exits 2 on a bad
    option: for the user-facing commands, whose ``main`` returns what it made)."""
    errors = USER_ERRORS + extra

    def decorate(main: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(main)
        def reporting_main(*args, **kwargs) -> Any:
            try:
                return main(*args, **kwargs)
            except errors as err:
                print(f"error: {err}", file=sys.stderr)
                if exit_status is not None:
                    raise SystemExit(exit_status) from None
                return 1

        return reporting_main

    return decorate
