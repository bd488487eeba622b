"""The one worker pool of the data tools: ``ordered_map(fn, items, workers, ...)``, results in input order, a bounded
number of tasks in flight, and a worker that dies (the OOM killer's SIGKILL, a segfault) ends the run in one line.

``multiprocessing.Pool`` never reports a dead worker: it starts a new one and waits for the lost task forever. This
helper runs on ``concurrent.futures.ProcessPoolExecutor``, which marks the pool broken (``BrokenProcessPool``) the
moment a worker process ends abnormally; the helper turns that into a ``UserError`` naming the worker's pid and
signal and what to do (fewer ``--workers``, more memory), after stopping the other workers, so the caller's atomic
writers remove their temporary files on the way out.

* ``workers == 1`` runs everything in this process (the initializer too), no pool.
* Workers ignore SIGINT and take SIGTERM's default action: the main process decides (Ctrl-C / SIGTERM there is a
  ``KeyboardInterrupt``, see :func:`sigterm_as_interrupt`, which stops the workers and cleans up).
* A ``UserError`` raised by the initializer is raised by every task instead (an exception in a pool initializer
  would break the pool with no message); a ``UserError`` raised by a task reaches the caller as it is.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ernie.utils import UserError

IN_FLIGHT_PER_WORKER = 4  # tasks submitted ahead per worker: memory stays flat on any input size

_INIT_ERROR: list[UserError | None] = [None]


def _worker_init(initializer: Callable | None, initargs: tuple) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked child inherits the parent's handler: undo it
    _INIT_ERROR[0] = None
    if initializer is not None:
        try:
            initializer(*initargs)
        except UserError as e:
            _INIT_ERROR[0] = e


_TASKS_RUN = [0]


def _run_task(fn: Callable, item: Any) -> Any:
    # fault injection for tests (benchmarks/bench_faults.py): ERNIE_FAULT_WORKER_KILL_AT=N makes a pool worker
    # SIGKILL itself at its N-th task, as the out-of-memory killer would
    _TASKS_RUN[0] += 1
    kill_at = os.environ.get("ERNIE_FAULT_WORKER_KILL_AT")
    if kill_at and _TASKS_RUN[0] == int(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)
    if _INIT_ERROR[0] is not None:
        raise _INIT_ERROR[0]
    return fn(item)


def signal_name(exitcode: int | None) -> str:
    """``SIGKILL`` for an exit code of -9, ``exit status N`` otherwise."""
    if exitcode is not None and exitcode < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-exitcode).name
        return f"signal {-exitcode}"
    return f"exit status {exitcode}"


def dead_worker_error(processes: dict, workers: int, what: str = "worker") -> UserError:
    """The one-line error for a broken pool: the worker that died first (the pool SIGTERMs the others once it
    notices, so a worker not ended by SIGTERM is the one), its signal, and what to do."""
    ended = [(pid, p.exitcode) for pid, p in processes.items() if p.exitcode not in (None, 0)]
    first = [x for x in ended if x[1] != -signal.SIGTERM] or ended
    if first:
        pid, code = first[0]
        how = f"was killed by {signal_name(code)}" if code is not None and code < 0 else f"ended ({signal_name(code)})"
        who = f"{what} process {pid}"
    else:
        how, who = "ended abruptly", f"a {what} process"
    hint = " (the kernel's out-of-memory killer sends SIGKILL)" if first and first[0][1] == -signal.SIGKILL else ""
    return UserError(
        f"{who} {how}{hint}; nothing was written: rerun with fewer --workers (now {workers}) or on a machine "
        "with more free memory"
    )


def ordered_map(
    fn: Callable,
    items: Iterable,
    workers: int,
    initializer: Callable | None = None,
    initargs: tuple = (),
    start_method: str = "fork",
    in_flight: int | None = None,
    what: str = "worker",
) -> Generator:
    """``map(fn, items)`` over ``workers`` processes: results in input order, at most ``in_flight`` (default
    ``IN_FLIGHT_PER_WORKER * workers``) tasks submitted ahead, so ``items`` is read lazily. A dead worker is a
    ``UserError`` (:func:`dead_worker_error`); any exit from the generator (an error, an interrupt, ``close()``)
    stops the workers."""
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(fn, items)
        return
    window = in_flight or IN_FLIGHT_PER_WORKER * workers
    executor = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context(start_method), initializer=_worker_init,
        initargs=(initializer, initargs),
    )  # fmt: skip
    processes: dict = {}  # pid -> Process, kept here: the executor forgets them once it breaks
    pending: collections.deque[Future] = collections.deque()
    finished = False
    try:
        for item in items:
            pending.append(executor.submit(_run_task, fn, item))
            processes.update(getattr(executor, "_processes", None) or {})
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
        finished = True
    except BrokenProcessPool:
        _stop(executor, processes)
        raise dead_worker_error(processes, workers, what) from None
    finally:
        if finished:
            executor.shutdown(wait=True)  # the workers exit on their own (no SIGTERM report from Paddle)
        else:
            _stop(executor, processes)


def _stop(executor: ProcessPoolExecutor, processes: dict) -> None:
    """Stop the workers now (SIGTERM, then SIGKILL for any still alive after a moment) and the executor."""
    processes.update(getattr(executor, "_processes", None) or {})
    for p in processes.values():
        with contextlib.suppress(Exception):
            if p.is_alive():
                p.terminate()
    for p in processes.values():
        with contextlib.suppress(Exception):
            p.join(2)
            if p.is_alive():
                p.kill()
                p.join(2)
    with contextlib.suppress(Exception):
        executor.shutdown(wait=False, cancel_futures=True)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises ``KeyboardInterrupt`` in the main thread while inside (``cli_main``: ``error: interrupted``,
    exit 130), so a terminated run stops its workers and removes its temporary files instead of dying mid-write."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = ["ordered_map", "sigterm_as_interrupt", "dead_worker_error", "signal_name", "IN_FLIGHT_PER_WORKER"]
