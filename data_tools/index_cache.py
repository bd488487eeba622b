"""Sample-index cache: build a mapping once, store it next to the data, memory-map it everywhere else.

A cache entry is ``<name>.npy`` (the array) plus ``<name>.json`` (what it was built from). ``<name>`` spells out
every parameter that shapes the array, so runs with different settings never share a file; the JSON records a
fingerprint of the source data and the array's shape/dtype, so a rebuilt corpus (stale cache) or a truncated
file is noticed and the entry rebuilt; so are contents that fail the caller's ``check`` (a file of the right size
whose values were garbled would otherwise crash a reader with an index error naming no file). Both files are
written through ``atomic_write`` (array first, JSON last: the JSON is the commit mark).

In a multi-process launch only one process builds: global rank 0 when the cache folder is shared by every node
(``share_folder``), otherwise local rank 0 of each node. The others poll for a valid entry and give up after
``timeout`` seconds with a message naming the file. Ranks come from the variables ``paddle.distributed.launch``
sets (``PADDLE_TRAINER_ID``, ``PADDLE_LOCAL_RANK``); no collective communication is needed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable

import numpy as np

from ernie.utils import UserError, atomic_write

logger = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the meaning of a cached array changes
DEFAULT_TIMEOUT = 3600.0
POLL_SECONDS = 0.5


def is_builder(share_folder: bool) -> bool:
    """Whether this process builds caches: global rank 0 (shared folder) or local rank 0 (per node)."""
    names = ("PADDLE_TRAINER_ID",) if share_folder else ("PADDLE_LOCAL_RANK", "PADDLE_RANK_IN_NODE")
    rank = next((int(os.environ[n]) for n in names if os.environ.get(n)), 0)
    return rank == 0


def data_fingerprint(path: str, **extra) -> dict:
    """What a cache depends on besides its parameters: the source file's size and mtime, plus ``extra``."""
    st = os.stat(path)
    return {
        "version": CACHE_VERSION,
        "source": os.path.abspath(path),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        **extra,
    }


def load_valid(
    path: str, fingerprint: dict, check: Callable[[np.ndarray], str | None] | None = None, warn: bool = True
) -> np.ndarray | None:
    """The cached array at ``path`` (memory-mapped) if it is complete, was built from ``fingerprint`` and passes
    ``check`` (which returns what is wrong with the contents, or ``None``)."""
    meta_path = _meta_path(path)
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):  # missing, truncated, or not parseable
        return None
    if (
        meta.get("fingerprint") != fingerprint
        or list(array.shape) != meta.get("shape")
        or str(array.dtype) != meta.get("dtype")
    ):
        return None
    problem = check(array) if check is not None else None
    if problem:
        if warn:
            logger.warning("%s: garbled sample-index cache (%s): rebuilding it", path, problem)
        return None
    return array


def cached_array(
    path: str,
    build: Callable[[], np.ndarray],
    fingerprint: dict,
    share_folder: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    check: Callable[[np.ndarray], str | None] | None = None,
) -> np.ndarray:
    """The array cached at ``path`` (``.npy``), built by ``build()`` if missing, truncated, stale or garbled
    (``check(array)`` returns a description of what is wrong, for contents that would crash a reader later).

    Returns a read-only memory map. Non-building ranks wait up to ``timeout`` seconds for the builder.
    """
    array = load_valid(path, fingerprint, check, warn=is_builder(share_folder))
    if array is not None:
        return array
    if is_builder(share_folder):
        start = time.perf_counter()
        array = np.ascontiguousarray(build())
        try:
            with atomic_write(path) as f:
                np.save(f, array, allow_pickle=False)
            meta = {"fingerprint": fingerprint, "shape": list(array.shape), "dtype": str(array.dtype)}
            with atomic_write(_meta_path(path), "w") as f:
                json.dump(meta, f, indent=1)
        except OSError as e:
            raise UserError(
                f"{path}: cannot write the sample-index cache ({e}); make the data folder writable "
                "or point the cache elsewhere"
            ) from None
        logger.info("built %s %s in %.2fs", os.path.basename(path), tuple(array.shape), time.perf_counter() - start)
        return np.load(path, mmap_mode="r")
    return _wait_for(path, fingerprint, share_folder, timeout, check)


def _wait_for(path: str, fingerprint: dict, share_folder: bool, timeout: float, check=None) -> np.ndarray:
    builder = "global rank 0" if share_folder else "local rank 0 of this node"
    logger.info("waiting for %s to build %s", builder, path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        array = load_valid(path, fingerprint, check, warn=False)
        if array is not None:
            return array
    hint = (
        ""
        if share_folder
        else "; if the data folder is shared by all nodes, pass --share_folder so that only global rank 0 builds"
    )
    raise UserError(
        f"{path}: timed out after {timeout:.0f}s waiting for {builder} to build the sample-index "
        f"cache (did it fail?){hint}"
    )


def _meta_path(path: str) -> str:
    return path[:-4] + ".json" if path.endswith(".npy") else path + ".json"
