"""Benchmarks record what they print in docs/results/<name>.md, with the machine and the commit: results are written
by the benchmark that measured them, never by hand (docs/results.md links them).

    with recorded("bench_model", args.results):
        ...  # everything printed here goes to the terminal and, when the block ends without error, to the file

Other programs that measure (the demo, ``examples/demo.py``) write their own body with :func:`write_results`, taking
``machine()`` before the run.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ernie.utils.machine import cpu_info, describe_machine  # noqa: E402

CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
ENV_SHOWN = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "MKL_DEBUG_CPU_TYPE",
    "ERNIE_NO_CPU_TUNING",
    "ERNIE_NO_FLUSH_DENORMALS",
    "FLAGS_use_stride_kernel",
)


def default_path(name: str) -> str:
    return os.path.join(ROOT, "docs", "results", f"{name}.md")


def machine() -> list[str]:
    """One line each: CPU model / vendor / flags, cores, memory, OS, package versions, commit, load."""
    info = cpu_info()
    flags = set(info.get("flags", "").split())
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo", encoding="utf-8") as f:
        mem = f"{int(f.readline().split()[1]) / 2**20:.0f} GB RAM"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = []
    for pkg in ("paddlepaddle", "torch", "transformers", "paddlenlp", "numpy"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{pkg} {importlib.metadata.version(pkg)}")
    commit = git_commit()
    env = ", ".join(f"{k}={os.environ[k]}" for k in ENV_SHOWN if k in os.environ) or "none of " + ", ".join(ENV_SHOWN)
    return [
        (
            f"- CPU: {info.get('model name', platform.processor() or '?')} ({info.get('vendor_id', '?')}), "
            f"{cores} cores for this process, {mem}; flags: {' '.join(f for f in CPU_FLAGS if f in flags) or '-'}"
        ),
        f"- {platform.platform()}, Python {platform.python_version()}; {', '.join(versions)}",
        f"- commit {commit}; environment at start: {env}",
    ]


def git_commit() -> str:
    """The checkout's short commit, "+ uncommitted changes" when the tracked files differ from it."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--untracked-files=no"):
        commit += " + uncommitted changes"
    return commit


def one_line() -> str:
    """The machine and commit in one line, for a table's caption."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"machine: {describe_machine()}, load {load:.1f}; python {platform.python_version()}; "
        f"commit {git_commit()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


class _Tee(io.TextIOBase):
    def __init__(self, stream):
        self.stream, self.buf = stream, io.StringIO()

    def write(self, s: str) -> int:
        self.stream.write(s)
        return self.buf.write(s)

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def recorded(name: str, path: str | None):
    """Tee stdout; on success write ``path`` (``None``/"" = do not record) atomically with a header."""
    if not path:
        yield
        return
    start, load0 = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.getloadavg()
    setup = machine()  # before the run: its environment and commit, not what the run changed
    tee = _Tee(sys.stdout)
    sys.stdout = tee
    try:
        yield
    finally:
        sys.stdout = tee.stream
    write_results(
        path,
        name,
        f"`benchmarks/{name}.py`",
        f"python benchmarks/{name}.py {' '.join(sys.argv[1:])}",
        setup,
        start,
        load0[0],
        "```\n" + tee.buf.getvalue().rstrip("\n") + "\n```",
    )


def write_results(
    path: str, title: str, writer: str, command: str, setup: list[str], start: str, load0: float, body: str
) -> None:
    """Write a results file atomically: the title, what wrote it (``writer``, ``command``) and when (``start``), the
    ``machine()`` lines taken before the run, the load average then and now, and ``body`` (markdown)."""
    from ernie.utils import atomic_write

    load1 = os.getloadavg()[0]
    head = (
        [f"# {title}", "", f"Written by {writer} (do not edit by hand): `{command}`, {start}.", ""]
        + setup
        + [
            (
                f"- load average (1 min) {load0:.1f} at start, {load1:.1f} at the end (other work on the machine skews "
                "timings and ratios)"
            ),
            "",
        ]
    )
    with atomic_write(path, "w") as f:
        f.write("\n".join(head) + "\n" + body.rstrip("\n") + "\n")
    inside = os.path.abspath(path).startswith(ROOT + os.sep)
    print(f"results written to {os.path.relpath(path, ROOT) if inside else path}")
