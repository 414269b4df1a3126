"""Command-line entry points: ``python -m espnet_ofa.bin.<name>``."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any, Callable, Optional, Type

# What the package raises when the user can fix the input: its own errors (bad data dirs,
# checkpoints, archives, options; all ValueErrors) and missing files. Their messages name
# the problem and the fix, so a command shows the message alone, not a traceback.
USER_ERRORS = (ValueError, FileNotFoundError)


def configure_logging(level: str) -> None:
    """The commands' log lines on stderr: time, level and module, at ``level`` (--log_level)."""
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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
