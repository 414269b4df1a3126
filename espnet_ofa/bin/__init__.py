"""Command-line entry points: ``python -m espnet_ofa.bin.<name>``."""

from __future__ import annotations

import functools
import sys
from typing import Callable, Type

# What the package raises when the user can fix the input: its own errors (bad data dirs,
# checkpoints, archives, options; all ValueErrors) and missing files. Their messages name
# the problem and the fix, so a command shows the message alone, not a traceback.
USER_ERRORS = (ValueError, FileNotFoundError)


def reports_errors(*extra: Type[BaseException]) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate a command's ``main``: `USER_ERRORS` (and ``extra``) print as one
    ``error: <message>`` line on stderr and ``main`` returns exit status 1."""
    errors = USER_ERRORS + extra

    def decorate(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def reporting_main(*args, **kwargs) -> int:
            try:
                return main(*args, **kwargs)
            except errors as err:
                print(f"error: {err}", file=sys.stderr)
                return 1

        return reporting_main

    return decorate
