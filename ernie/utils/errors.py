"""User-facing errors: one clear line, a non-zero exit, never a traceback for bad input."""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from .cpu_tuning import tune_process


class UserError(Exception):
    """Bad input, a bad flag or a missing file. The message names the file/line or flag at fault.

    Entry scripts wrap their ``main`` with :func:`cli_main`, which prints ``error: <message>`` to stderr and exits
    with status 2. Library code raises it instead of ``sys.exit`` so that it stays testable.
    """


def is_interrupt(error: BaseException | None) -> bool:
    """Ctrl-C, also when Paddle re-raises it from C++: a KeyboardInterrupt raised in Python code that a C++ op
    runs (a PyLayer's backward in ernie/ops.py) comes back as ``OSError: (External) KeyboardInterrupt ...``."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, KeyboardInterrupt):
            return True
        if isinstance(error, (OSError, RuntimeError, SystemError)) and "KeyboardInterrupt" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


class Stopped(BaseException):
    """A run stopped at a safe point on a signal (SIGINT, SIGTERM: the training engine's stop requests) after saving
    what a rerun resumes from. :func:`cli_main` prints ``message`` and exits as the signal asks: ``error:
    interrupted`` with status 130 (SIGINT), ``error: terminated (SIGTERM)`` with 128 + the signal's number."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum, self.message = signum, message


_P = ParamSpec("_P")
_R = TypeVar("_R")


def cli_main(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorator for script entry points: applies the process-level CPU settings
    (:func:`ernie.utils.cpu_tuning.tune_process`, before the entry's first GEMM) and turns :class:`UserError` (exit 2),
    :class:`Stopped` (130 / 143) and Ctrl-C (``error: interrupted``, exit 130, also when Paddle re-raised it from C++:
    :func:`is_interrupt`) into one line + exit code.

    Set ``ERNIE_DEBUG=1`` to get the full traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        tune_process()
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            if os.environ.get("ERNIE_DEBUG"):
                raise
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)
        except Stopped as e:
            print(e.message, flush=True)
            if e.signum == signal.SIGINT:
                print("error: interrupted", file=sys.stderr, flush=True)
            else:
                print(f"error: terminated ({signal.Signals(e.signum).name})", file=sys.stderr, flush=True)
            sys.exit(128 + e.signum)
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr, flush=True)
            sys.exit(130)
        except Exception as e:
            if not is_interrupt(e) or os.environ.get("ERNIE_DEBUG"):
                raise
            print("error: interrupted", file=sys.stderr, flush=True)
            sys.exit(130)

    return wrapper
