"""One-way layers (docs/design.md, "Layers"): import-linter checks the contracts of pyproject.toml's
``[tool.importlinter]`` on the source tree, function-level imports included.

The checker runs in a subprocess (it resolves ``ernie`` / ``data_tools`` on its own ``sys.path``), once on this
checkout, and once on a copy of it with an upward import injected, which must fail naming that import: the test can
fail. Every module of ``ernie`` must sit in a layer, so a new module cannot escape the check. The numpy-only
weights format and the config import no Paddle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("importlinter", reason="import-linter not installed (pip install -e .[test])")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("ernie", "data_tools")


def lint_imports(root: str) -> subprocess.CompletedProcess:
    """``lint-imports`` on the tree at ``root`` with the contracts of ``root/pyproject.toml``."""
    env = {**os.environ, "PYTHONPATH": root}
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()", "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def contracts() -> list[dict]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["tool"]["importlinter"]["contracts"]


def layer_modules(contract: dict) -> set[str]:
    return {name.strip().strip("()") for layer in contract["layers"] for name in layer.replace("|", ":").split(":")}


def copy_tree(dst: str) -> str:
    """The Python sources of this checkout and its pyproject.toml under ``dst``."""

    def ignore(directory, names):
        return [
            n
            for n in names
            if not (n.endswith(".py") or os.path.isdir(os.path.join(directory, n))) or n in ("__pycache__", "configs")
        ]

    for package in PACKAGES:
        shutil.copytree(os.path.join(REPO, package), os.path.join(dst, package), ignore=ignore)
    shutil.copy(os.path.join(REPO, "pyproject.toml"), dst)
    return dst


def inject(root: str, module: str, line: str) -> None:
    path = os.path.join(root, *module.split(".")) + ".py"
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"\n\ndef _injected():\n    {line}\n")


def test_the_tree_keeps_its_layers():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, line, culprit",
    [
        # the circle this refactor cut: the weights format importing the model (function-level, as it used to)
        ("ernie.weights", "from ernie.modeling import ErnieModel", "ernie.weights -> ernie.modeling"),
        # utils reaching up to training
        ("ernie.utils.labels", "import ernie.training.checkpoint", "ernie.utils.labels -> ernie.training.checkpoint"),
        # data_tools reaching up to the model
        (
            "data_tools.batching",
            "from ernie.configuration import ErnieConfig",
            "data_tools.batching -> ernie.configuration",
        ),
    ],
)
def test_an_upward_import_fails(tmp_path, module, line, culprit):
    root = copy_tree(str(tmp_path))
    assert lint_imports(root).returncode == 0  # the copy is as good as the tree
    inject(root, module, line)
    result = lint_imports(root)
    assert result.returncode != 0 and "BROKEN" in result.stdout
    assert culprit in result.stdout, result.stdout


def test_every_module_sits_in_a_layer():
    layers = next(c for c in contracts() if c["id"] == "layers")
    listed = layer_modules(layers)
    ernie_dir = os.path.join(REPO, "ernie")
    modules = {
        f"ernie.{n[:-3] if n.endswith('.py') else n}"
        for n in os.listdir(ernie_dir)
        if (n.endswith(".py") and n != "__init__.py") or os.path.isfile(os.path.join(ernie_dir, n, "__init__.py"))
    }
    assert modules - listed == set(), "add these modules to a layer in pyproject.toml [tool.importlinter]"
    assert "data_tools" in listed


def test_the_model_layer_is_ordered():
    """The numpy-only weights format lies under configuration, configuration under modeling."""
    model = next(c for c in contracts() if c["id"] == "model")
    order = [layer_modules({"layers": [layer]}) for layer in model["layers"]]
    assert order[0] == {"ernie.modeling"} and "ernie.configuration" in order[1] and order[-1] == {"ernie.weights"}


def test_the_weights_format_and_the_config_import_no_paddle():
    """ernie.weights is numpy only; the config (and convert's --help) stay Paddle-free on top of it."""
    code = (
        "import sys, ernie.weights, ernie.configuration, ernie.convert; "
        "print(sorted(m for m in ('paddle', 'torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": REPO},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
