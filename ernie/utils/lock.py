"""The output locks: one run writes into an ``output_dir`` at a time (pretraining and every fine-tuning task), and
one run writes a given data-tool output at a time (:func:`lock_output`: a jsonl, a token-file prefix, a vocabulary
folder; two runs on one output would otherwise both report success and one result would be gone).

``output_dir/.run.lock`` holds a POSIX record lock (``fcntl.lockf``) and the holder's ``pid <pid> on <host>``. The OS
drops the lock when the holding process dies (SIGKILL included), so a stale file never blocks a rerun. A record lock
belongs to the process: a second ``lock_output_dir`` on the same directory in the same process succeeds, and
closing any descriptor of the file releases it, so hold one lock per directory per process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO

from .errors import UserError
from .io import output_error

LOCK_FILE = ".run.lock"
_HELD_LOCKS: list = []  # open lock files, kept until released (or the process ends)


def lock_output_dir(output_dir: str, wait: float = 30.0, log: Callable[[str], None] | None = None) -> IO:
    """Hold an exclusive lock on ``output_dir`` (created if missing), so two runs can never write the same files.
    A lock held by another process is waited for up to ``wait`` seconds (a killed run's workers may still be
    exiting; ``log`` is told once that it waits), then it is a ``UserError`` naming the holder. Returns the open
    lock file; :func:`release_output_dir` (or closing it) releases the lock, else the process's end does."""
    path = os.path.join(output_dir, LOCK_FILE)
    try:
        os.makedirs(output_dir, exist_ok=True)
        f = open(path, "a+")
    except OSError as e:
        raise UserError(f"--output_dir: {output_error(output_dir, e)}") from None
    deadline = time.time() + wait
    told = False
    while True:
        try:
            # a POSIX record lock: unlike flock, not shared with forked children (DataLoader workers), so it is
            # released the moment this process dies
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            if time.time() >= deadline:
                f.close()
                raise UserError(
                    f"--output_dir {output_dir}: another run ({holder}) is writing to it; stop it first"
                ) from None
            if log and not told:
                log(f"waiting up to {wait:.0f} s for another run ({holder}) writing to {output_dir}")
                told = True
            time.sleep(0.2)
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    _HELD_LOCKS.append(f)
    return f


def release_output_dir(lock: IO) -> None:
    """Release a lock taken by :func:`lock_output_dir` (the lock file stays: it is reused by the next run)."""
    if lock in _HELD_LOCKS:
        _HELD_LOCKS.remove(lock)
    lock.close()


def discard_unused_output_dir(output_dir: str) -> bool:
    """Remove ``output_dir`` when it holds nothing but the ``.run.lock`` this process holds (a run refused by a
    pre-check must not leave an empty folder behind); True when removed. Called only for an ``output_dir`` this
    run created."""
    path = os.path.join(output_dir, LOCK_FILE)
    held = [f for f in _HELD_LOCKS if os.path.abspath(f.name) == os.path.abspath(path)]
    try:
        if not held or os.listdir(output_dir) != [LOCK_FILE]:
            return False
        os.unlink(path)
        os.rmdir(output_dir)
    except OSError:
        return False
    for f in held:
        release_output_dir(f)
    return True


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def output_lock_path(output: str) -> str:
    """The lock file of a data-tool output: ``.<name>.lock`` beside it (``output`` a file, a folder or a token-file
    prefix)."""
    parent, name = os.path.split(os.path.abspath(output.rstrip("/")))
    return os.path.join(parent, f".{name}.lock")


@contextlib.contextmanager
def lock_output(
    output: str, flag: str, wait: float = 30.0, log: Callable[[str], None] | None = _stderr
) -> Iterator[None]:
    """Hold the exclusive lock of the output ``output`` (named by ``flag`` in messages) while inside: every writer of
    that output takes it, so two runs never replace each other's result. A lock held by another process is waited for
    up to ``wait`` seconds (``log`` says once what it waits for), then it is a ``UserError`` naming the holder. The
    lock file is removed on release (a waiter that then finds a new file retries on it), and the OS drops the lock of
    a killed run. Check whether the output exists *inside* the lock."""
    path = output_lock_path(output)
    deadline = time.time() + wait
    told = False
    while True:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            f = open(path, "a+")
        except OSError as e:
            raise UserError(f"{flag}: {output_error(output, e)}") from None
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            if time.time() >= deadline:
                raise UserError(f"{flag} {output}: another run ({holder}) is writing it; stop it first") from None
            if log and not told:
                log(f"waiting up to {wait:.0f} s for another run ({holder}) writing {output} to finish")
                told = True
            time.sleep(0.2)
            continue
        try:
            same = os.path.samestat(os.fstat(f.fileno()), os.stat(path))
        except OSError:
            same = False
        if same:
            break
        f.close()  # the holder removed the file as we opened it: lock the new one
    try:
        try:
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            f.flush()
        except OSError as e:
            raise UserError(f"{flag}: {output_error(path, e)}") from None
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        f.close()
