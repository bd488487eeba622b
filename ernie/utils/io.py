"""Atomic outputs: nothing half-written ever sits under a final name, nothing is overwritten silently, and an output
location that cannot be written is one ``UserError`` line naming the path (checked up front by
``check_output_path``, and again where the helpers create their temporary files)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from typing import IO

from .errors import UserError

_FAULT_CALLS = [0]


def fault_point(name: str) -> None:
    """Fault-injection hook for tests, a no-op unless set in the environment: ``ERNIE_FAULT_LOG=FILE`` appends
    ``name`` to FILE at each call; ``ERNIE_FAULT_KILL_AT=N`` SIGKILLs this process at its N-th call. The atomic
    helpers call it between their writes and renames, so a test can kill a run at every such point."""
    log, kill_at = os.environ.get("ERNIE_FAULT_LOG"), os.environ.get("ERNIE_FAULT_KILL_AT")
    if not (log or kill_at):
        return
    _FAULT_CALLS[0] += 1
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{_FAULT_CALLS[0]} {name}\n")
    if kill_at and _FAULT_CALLS[0] == int(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: str) -> None:
    """fsync a directory so that a rename inside it is durable (no-op where the OS does not allow it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_output_path(path: str, overwrite: bool = False, flag: str = "--overwrite") -> None:
    """Refuse to replace an existing output unless ``overwrite`` (the message names the path and the flag), and an
    output that cannot be created at all (:func:`check_writable`) before any work is done."""
    if os.path.lexists(path) and not overwrite:
        raise UserError(f"output {path} already exists; pass {flag} to replace it")
    check_writable(path)


def check_writable(path: str) -> None:
    """``UserError`` naming ``path`` when it cannot be created: its nearest existing ancestor directory is not a
    directory, is on a read-only file system, or is not writable by this user."""
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UserError(f"cannot write {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        why = "is on a read-only file system" if read_only else "is not writable by this user"
        raise UserError(f"cannot write {path}: {parent} {why}")


# errno values that only a write can give: an OSError with one of these inside an output's ``with`` block is that
# output's (a full disk, a file-size or disk quota limit, a read-only file system)
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS})
_CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file-size limit is reached (ulimit -f)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def output_error(path: str, error: OSError) -> UserError:
    """The one-line ``UserError`` for an ``OSError`` met while creating or writing the output ``path``: the path
    and the cause (``the disk is full``, ``the file-size limit is reached``, ...)."""
    cause = _CAUSES.get(error.errno or -1)
    cause = f"{cause} ({error.strerror})" if cause and error.strerror else cause or error.strerror or str(error)
    return UserError(
        f"cannot write {path}: {cause}" + (f" ({error.filename})" if error.filename and error.filename != path else "")
    )


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb", overwrite: bool = True) -> Iterator[IO]:
    """Write ``path`` through a temporary file in the same directory; fsync and rename only on success.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    if not overwrite:
        check_output_path(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise output_error(path, e) from None
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would have
    try:
        try:
            with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
                try:
                    yield f
                except OSError as e:
                    if e.errno in WRITE_ERRNOS:  # a write into f failed: the output's error
                        raise output_error(path, e) from None
                    raise
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:  # flush / close / fsync
            raise output_error(path, e) from None
        fault_point(f"atomic_write {path}")
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise output_error(path, e) from None
        fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary sibling directory; on success it replaces ``path`` in one rename.

    The previous ``path`` (if any) is moved aside to ``.<name>.old`` first and deleted only after the new one is in
    place, so a crash at any moment leaves a complete directory at ``path`` or, in the instant between the two
    renames, at ``.<name>.old``: readers go through :func:`resolve_dir`, which falls back to it.
    """
    path = os.path.abspath(path.rstrip("/"))
    if not overwrite:
        check_output_path(path)
    parent, name = os.path.split(path)
    tmp = os.path.join(parent, f".{name}.tmp")
    old = os.path.join(parent, f".{name}.old")
    try:
        os.makedirs(parent, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    except OSError as e:
        raise output_error(path, e) from None
    try:
        try:
            yield tmp
        except OSError as e:
            if e.errno in WRITE_ERRNOS:  # a write into tmp failed: the output's error
                raise output_error(path, e) from None
            raise
        fault_point(f"atomic_dir {path}: written")
        try:
            for root, _, files in os.walk(tmp):
                for fn in files:
                    with open(os.path.join(root, fn), "rb") as f:
                        os.fsync(f.fileno())
            fsync_dir(tmp)
            if os.path.exists(path):
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
                fault_point(f"atomic_dir {path}: old moved aside")
            os.replace(tmp, path)
        except OSError as e:
            raise output_error(path, e) from None
        fsync_dir(parent)
        fault_point(f"atomic_dir {path}: renamed")
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def resolve_dir(path: str) -> str | None:
    """The complete directory written by :func:`atomic_dir` at ``path``: ``path`` itself, else the ``.old`` copy
    left by a crash between its two renames, else ``None``."""
    path = os.path.abspath(path.rstrip("/"))
    if os.path.isdir(path):
        return path
    parent, name = os.path.split(path)
    old = os.path.join(parent, f".{name}.old")
    return old if os.path.isdir(old) else None


def list_input_files(path: str, flag: str = "--input_path", suffixes: tuple[str, ...] = ()) -> list[str]:
    """``path`` itself if it is a file, else every non-hidden file under it (recursively) with one of ``suffixes``,
    in sorted order; ``UserError`` naming ``flag`` when ``path`` is missing or holds no such file."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise UserError(f"{flag}: {path} does not exist")
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [
            os.path.join(root, n) for n in names if not n.startswith(".") and (not suffixes or n.endswith(suffixes))
        ]
    if not files:
        wanted = f" ending in {' or '.join(suffixes)}" if suffixes else ""
        raise UserError(f"{flag}: {path} contains no files{wanted}")
    return sorted(files)


def _temp_name_pattern(final: str) -> re.Pattern:
    """The names of this toolkit's temporary files for ``final``: ``.<name>.XXXXXXXX.tmp`` (``tempfile.mkstemp`` in
    :func:`atomic_write` and the token-file builder) and ``.<name>.tmp`` (:func:`atomic_dir`)."""
    return re.compile(rf"\.{re.escape(os.path.basename(final))}(\.[a-z0-9_]{{8}})?\.tmp")


def remove_stale_temporaries(*finals: str) -> list[str]:
    """Remove the temporary files a killed run left for the outputs ``finals`` (only the toolkit's own temporary
    names of exactly these outputs, never another file); returns the removed paths. Call it while holding the
    output's lock (:func:`ernie.utils.lock.lock_output`), so no running writer's file is touched."""
    removed = []
    for final in finals:
        directory = os.path.dirname(os.path.abspath(final))
        pattern = _temp_name_pattern(final)
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            if pattern.fullmatch(name):
                path = os.path.join(directory, name)
                try:
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path)
                    else:
                        os.unlink(path)
                except OSError:
                    continue
                removed.append(path)
    return removed


def remove_dir(path: str) -> None:
    """Delete a directory so that no half-deleted copy is ever left under its name: renamed to
    ``.<name>.deleting`` first (a leftover one is removed by the next run)."""
    parent, name = os.path.split(os.path.abspath(path))
    doomed = os.path.join(parent, f".{name}.deleting")
    shutil.rmtree(doomed, ignore_errors=True)
    os.replace(path, doomed)
    fault_point(f"remove {path}: renamed")
    shutil.rmtree(doomed, ignore_errors=True)
