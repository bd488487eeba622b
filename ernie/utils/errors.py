"""User-facing errors: one clear line, a non-zero exit, never a traceback for bad input."""
from __future__ import annotations

import functools
import os
import sys
from typing import Callable

from .cpu_tuning import tune_process


class UserError(Exception):
    """Bad input, a bad flag or a missing file. The message names the file/line or flag at fault.

    Entry scripts wrap their ``main`` with :func:`cli_main`, which prints ``error: <message>`` to stderr and exits
    with status 2. Library code raises it instead of ``sys.exit`` so that it stays testable.
    """


def cli_main(fn: Callable[..., int | None]) -> Callable[..., int | None]:
    """Decorator for script entry points: applies the process-level CPU settings
    (:func:`ernie.utils.cpu_tuning.tune_process`, before the entry's first GEMM) and turns :class:`UserError` (and
    Ctrl-C) into one line + exit code.

    Set ``ERNIE_DEBUG=1`` to get the full traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tune_process()
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            if os.environ.get("ERNIE_DEBUG"):
                raise
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr, flush=True)
            sys.exit(130)

    return wrapper
