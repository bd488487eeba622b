"""One-way layers (docs/design.md, "Layers"): import-linter checks the contracts of pyproject.toml's
``[tool.importlinter]`` on the source tree, function-level imports included.

The checker runs in a subprocess (it resolves ``ernie`` / ``data_tools`` on its own ``sys.path``), once on this
checkout, and once on a copy of it with an upward import injected, which must fail naming that import: the test can
fail. Every module of ``ernie`` must sit in a layer, so a new module cannot escape the check. The numpy-only
weights format and the config import no Paddle.

A first-party import inside a function is there only to delay a heavy or optional dependency (Paddle, the model):
it says so in a comment containing "delay", on its line, on a line of the run of imports it belongs to, or on the
line just above that run. Everything else is imported at the top of the module (issue #23).
"""

from __future__ import annotations

import ast
import io
import os
import shutil
import subprocess
import sys
import tokenize

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


# ------------------------------------------------------------------------------ function-level imports say why

DELAY_WORD = "delay"


def _first_party(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] in PACKAGES
    return any(alias.name.split(".")[0] in PACKAGES for alias in node.names)


def undelayed_imports(source: str) -> list[int]:
    """Line numbers of the first-party imports inside functions of ``source`` whose run of adjacent import
    statements has no comment containing "delay" on its lines or on the line just above it."""
    tree = ast.parse(source)
    comments = {
        tok.start[0]: tok.string.lower()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    in_function = {
        id(inner)
        for fn in ast.walk(tree)
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
        for stmt in fn.body
        for inner in ast.walk(stmt)
    }
    runs: list[list[ast.stmt]] = []
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if not isinstance(block, list):
                continue
            run: list[ast.stmt] = []
            for stmt in [*block, None]:
                if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    run.append(stmt)
                    continue
                if run:
                    runs.append(run)
                run = []
    bad = []
    for run in runs:
        first_party = [s for s in run if id(s) in in_function and _first_party(s)]
        lines = range(run[0].lineno - 1, (run[-1].end_lineno or run[-1].lineno) + 1)
        if first_party and not any(DELAY_WORD in comments.get(line, "") for line in lines):
            bad.extend(s.lineno for s in first_party)
    return sorted(bad)


def test_function_level_imports_say_what_they_delay():
    found = []
    for package in PACKAGES:
        for directory, _, files in os.walk(os.path.join(REPO, package)):
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(directory, name)
                    with open(path, encoding="utf-8") as f:
                        found += [f"{os.path.relpath(path, REPO)}:{line}" for line in undelayed_imports(f.read())]
    assert found == [], (
        "first-party imports inside functions without a comment saying what they delay (move them to the top of "
        "the module, or add e.g. '# delays Paddle: <why>'): " + ", ".join(found)
    )


CHECKED = """
import os

from ernie.utils import UserError

try:
    from data_tools import helpers  # module level, even inside try: not checked
except ImportError:
    helpers = None


def plain():
    import json  # third party / stdlib: not checked

    from ernie.tokenizer import ErnieTokenizer
    return ErnieTokenizer


def delayed():
    import paddle

    from ernie.modeling import ErnieModel  # delays Paddle: --help stays fast
    from ernie.configuration import ErnieConfig
    return ErnieModel, ErnieConfig


class Holder:
    def method(self):
        if os.environ.get("X"):
            # delays Paddle: the model loads only when asked
            from ernie import modeling
            return modeling
        from . import sibling
        return sibling
"""


def test_an_uncommented_function_level_import_is_named():
    lines = CHECKED.splitlines()
    found = [lines[n - 1].strip() for n in undelayed_imports(CHECKED)]
    assert found == ["from ernie.tokenizer import ErnieTokenizer", "from . import sibling"]
    fixed = CHECKED.replace("from . import sibling", "from . import sibling  # Delays the parser's plugins")
    above = "    # delays torch (the tokenizer's fast path)\n"
    fixed = fixed.replace("    from ernie.tokenizer", above + "    from ernie.tokenizer")
    assert undelayed_imports(fixed) == []
