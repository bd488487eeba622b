"""Isolated Python environments the toolkit creates, caches and drives as subprocesses (no Paddle imported here).

Two environments, each a plain ``venv`` under the cache dir (``$ERNIE_TOOLKIT_CACHE``, default
``~/.cache/ernie-toolkit``), created on first use and reused while its requirement list is unchanged:

``paddle26``    Python of this process + ``paddlepaddle==2.6.2``: the last Paddle whose ``paddle.jit.save`` writes the
                legacy ProgramDesc ``model.pdmodel`` that FastDeploy 1.0.7's bundled Paddle Inference 2.x reads.
                Paddle 3.3.1 cannot build that program for a model with a matmul (see ernie/deploy/legacy_export.py).
``fastdeploy``  Python 3.10 + ``fastdeploy-python==1.0.7`` (its last release: wheels for CPython 3.8-3.10 only) and
                ``numpy<2`` (its compiled binding misreads numpy-2 arrays); its OpenVINO CPU plugin set to compute
                in f32 (ernie/deploy/openvino_precision.py: it would run bf16 on CPUs with bf16 instructions).

Contract of :func:`ensure_env` ``(name) -> python executable``:
- creation runs in ``<name>.tmp`` under an exclusive lock and is renamed to ``<name>`` only once every package is
  installed and the import check passed, so a killed creation leaves nothing that looks complete;
- ``<name>/ernie-env.json`` records the requirement list; a different list (an upgrade of the toolkit) rebuilds;
- the spec's ``configure`` step (settings inside installed packages) runs before that rename and again on every
  call (idempotent), so an environment created by an older toolkit gets it without a rebuild;
- the toolkit itself is not installed there: ``<name>/toolkit/ernie`` is a symlink to the ``ernie`` package of the
  last caller (refreshed on every call), put on ``sys.path`` by a ``.pth`` file, so the environment's Python runs
  the toolkit's deployment scripts directly; only the ``ernie`` package (its tokenizer and pure-Python modules) is
  visible there. Subprocesses started by :func:`run_in_env` / with :func:`child_env` get their caller's own link
  (``<name>/toolkits/<hash>/ernie``) on ``PYTHONPATH`` instead, so checkouts sharing the cache never mix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

from ernie.utils import ArgumentParser, UserError, cli_main

from .openvino_precision import PLUGINS_XML, set_cpu_f32

ERNIE_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = "ernie-env.json"


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    name: str
    requirements: tuple[str, ...]
    python_version: str | None  # "3.10": find that interpreter; None: this process's interpreter
    check: str  # a Python statement that must succeed in the finished environment
    configure: Callable[[str], None] | None = None  # (environment dir) -> None, idempotent


def _openvino_f32(directory: str) -> None:
    """FastDeploy's OpenVINO CPU plugin computes in f32 (see ernie/deploy/openvino_precision.py)."""
    found = glob.glob(os.path.join(directory, "lib", "python3*", "site-packages", "fastdeploy", PLUGINS_XML))
    if not found:
        raise UserError(f"{directory}: fastdeploy's OpenVINO has no {PLUGINS_XML} (not fastdeploy-python 1.0.7?)")
    for path in found:
        set_cpu_f32(path)


ENVS = {
    "paddle26": EnvSpec(
        "paddle26",
        ("paddlepaddle==2.6.2", "numpy<2"),
        None,
        "import paddle; assert paddle.__version__.startswith('2.6'), paddle.__version__",
    ),
    "fastdeploy": EnvSpec(
        "fastdeploy",
        ("fastdeploy-python==1.0.7", "numpy<2"),
        "3.10",
        "import fastdeploy, numpy; assert numpy.__version__ < '2', numpy.__version__",
        _openvino_f32,
    ),
}


def cache_dir() -> str:
    return os.environ.get("ERNIE_TOOLKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ernie-toolkit")


def env_dir(name: str) -> str:
    return os.path.join(cache_dir(), name)


def env_python(name: str) -> str:
    return os.path.join(env_dir(name), "bin", "python")


def find_python(version: str) -> str | None:
    """An interpreter of ``version`` ("3.10") that really runs: ``$ERNIE_PYTHON310``, pyenv's, or ``python3.10`` on
    PATH (a pyenv shim on PATH may exist and fail, hence the check)."""
    tag = version.replace(".", "")
    candidates = [os.environ.get(f"ERNIE_PYTHON{tag}")]
    for root in (os.environ.get("PYENV_ROOT"), os.path.expanduser("~/.pyenv")):
        if root:
            candidates += sorted(
                glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}")), reverse=True
            )
    candidates += [shutil.which(f"python{version}")]
    if sys.version_info[:2] == tuple(int(x) for x in version.split(".")):
        candidates.insert(1, sys.executable)
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            probe = subprocess.run(
                [c, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                env=_clean_env(),
            )
            if probe.returncode == 0 and probe.stdout.strip() == version:
                return c
    return None


def base_python(spec: EnvSpec) -> str:
    if spec.python_version is None:
        return getattr(sys, "_base_executable", None) or sys.executable
    found = find_python(spec.python_version)
    if found is None:
        raise UserError(
            f"the {spec.name} environment needs Python {spec.python_version} (fastdeploy-python 1.0.7 has "
            f"wheels for CPython 3.8-3.10 only): install it (e.g. pyenv install {spec.python_version}) or "
            f"set ERNIE_PYTHON{spec.python_version.replace('.', '')}"
        )
    return found


@contextlib.contextmanager
def _lock(path: str):
    import fcntl

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _env_record(spec: EnvSpec) -> dict:
    return {"name": spec.name, "requirements": list(spec.requirements)}


def _is_current(spec: EnvSpec) -> bool:
    if not os.access(env_python(spec.name), os.X_OK):  # e.g. its base interpreter was removed
        return False
    try:
        with open(os.path.join(env_dir(spec.name), MARKER), encoding="utf-8") as f:
            return json.load(f) == _env_record(spec)
    except (OSError, ValueError):
        return False


def _symlink(target: str, link: str) -> None:
    """Point ``link`` at ``target`` (atomically replaced when it points elsewhere)."""
    if os.path.islink(link) and os.readlink(link) == target:
        return
    os.makedirs(os.path.dirname(link), exist_ok=True)
    tmp = f"{link}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def toolkit_path(name: str) -> str:
    """A folder holding only ``ernie`` -> this toolkit's package, private to this toolkit copy (keyed by its path):
    the ``PYTHONPATH`` of :func:`run_in_env`, so two checkouts sharing the cache never run each other's code."""
    import hashlib

    key = hashlib.sha1(ERNIE_PACKAGE_DIR.encode()).hexdigest()[:12]
    folder = os.path.join(env_dir(name), "toolkits", key)
    _symlink(ERNIE_PACKAGE_DIR, os.path.join(folder, "ernie"))
    return folder


def _link_toolkit(directory: str) -> None:
    """``directory/toolkit/ernie`` -> this toolkit's ``ernie`` package, and the ``.pth`` that puts it on sys.path
    (for running the deployment scripts with the environment's Python directly)."""
    toolkit = os.path.join(directory, "toolkit")
    _symlink(ERNIE_PACKAGE_DIR, os.path.join(toolkit, "ernie"))
    for site in glob.glob(os.path.join(directory, "lib", "python3*", "site-packages")):
        pth = os.path.join(site, "ernie_toolkit_link.pth")
        if not os.path.isfile(pth):
            with open(pth, "w", encoding="utf-8") as f:
                f.write(toolkit + "\n")


def _run(cmd: list[str], log) -> None:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_clean_env())
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise UserError(f"creating the environment failed: {' '.join(cmd)}\n{tail}")
    log(f"  {' '.join(os.path.basename(c) if i == 0 else c for i, c in enumerate(cmd))}: ok")


def _clean_env() -> dict:
    """The subprocess environment: no PYTHONPATH/PYTHONHOME of the caller (they would leak its packages in)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _relocate_scripts(old: str, new: str) -> None:
    """A venv's bin/ scripts (activate, pip's shebangs) name the folder it was created in: point them at ``new``."""
    bindir = os.path.join(new, "bin")
    for name in os.listdir(bindir):
        path = os.path.join(bindir, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        if old.encode() in data and b"\0" not in data:
            with open(path, "wb") as f:
                f.write(data.replace(old.encode(), new.encode()))


def ensure_env(name: str, log=None) -> str:
    """The python executable of environment ``name`` (see the module docstring), created if needed."""
    spec = ENVS[name]
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    os.makedirs(cache_dir(), exist_ok=True)
    final = env_dir(name)
    if not _is_current(spec):
        with _lock(final + ".lock"):
            if not _is_current(spec):
                base = base_python(spec)
                tmp = final + ".tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                t0 = time.perf_counter()
                log(f"creating the {name} environment in {final} ({', '.join(spec.requirements)}; a few minutes, once)")
                _run([base, "-m", "venv", "--clear", tmp], log)
                py = os.path.join(tmp, "bin", "python")
                _run([py, "-m", "pip", "install", "--no-input", *spec.requirements], log)
                _run([py, "-c", spec.check], log)
                if spec.configure:
                    spec.configure(tmp)
                with open(os.path.join(tmp, MARKER), "w", encoding="utf-8") as f:
                    json.dump(_env_record(spec), f)
                shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
                _relocate_scripts(tmp, final)
                log(f"  {name} environment ready in {time.perf_counter() - t0:.0f} s")
    if spec.configure:
        spec.configure(final)
    _link_toolkit(final)
    return env_python(name)


def run_in_env(name: str, args: list[str], log=None, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python args...`` in environment ``name`` (created if needed) with a clean environment."""
    py = ensure_env(name, log=log)
    return subprocess.run([py, *args], env=child_env(name), **kwargs)


def child_env(name: str) -> dict:
    """The environment for a subprocess in environment ``name``: :func:`_clean_env` + ``PYTHONPATH`` = this
    toolkit's private link folder (ahead of the ``.pth`` link, which follows the last ``ensure_env`` caller)."""
    return {**_clean_env(), "PYTHONPATH": toolkit_path(name)}


@cli_main
def main(argv: list[str] | None = None) -> list[str]:
    """``python -m ernie.deploy.envs NAME...`` (scripts/setup_fastdeploy_env.sh): create or refresh the named
    environments, print ``NAME: python`` for each."""
    p = ArgumentParser(
        allow_abbrev=False, prog="python -m ernie.deploy.envs", description="Create the toolkit's environments."
    )
    p.add_argument("names", nargs="+", choices=sorted(ENVS))
    pythons = []
    for name in p.parse_args(argv).names:
        pythons.append(ensure_env(name))
        print(f"{name}: {pythons[-1]}")
    return pythons


if __name__ == "__main__":
    main()
