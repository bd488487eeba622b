"""The entry-point registry: every command of the toolkit, declared once in :data:`ENTRY_POINTS`.

From it come (``python -m ernie.cli --write-scripts`` writes them, ``python -m ernie.cli --check`` and
tests/test_cli.py fail when they drift):

- ``scripts/<name>.py``: a few generated lines calling :func:`run`, so ``python scripts/run_pretrain.py`` and
  ``python -m paddle.distributed.launch scripts/run_pretrain.py`` work from a source tree;
- ``[project.scripts]`` in pyproject.toml: the console script ``ernie-<name with dashes>`` runs ``ernie.cli:<name>``
  (the same :func:`run`) for an install without the source tree;
- the list of entry points that tests/test_cli.py and tests/test_cpu_tuning.py check.

The ``main`` functions live in their modules (``module:function``); each is ``@cli_main`` over
``ernie.utils.ArgumentParser``. Exit status (:func:`run`): 0 on success, as several mains return their results
(which ``sys.exit`` would print, with status 1); a ``main``'s return value is the status only where the entry says so
(``returns_status``: the data tools, and gpu_selfcheck's 1 when a case failed). ``cli_main`` makes a bad flag or a
``UserError`` one ``error:`` line with status 2, and Ctrl-C ``error: interrupted`` with status 130.

``before`` names a set-up run before the ``main``'s module (and so Paddle) is imported: run_pretrain's
``OMP_NUM_THREADS`` from the cores per process (``ernie.training.distributed.configure_threads``).

Importing this module imports neither Paddle nor any ``main``'s module: the FastDeploy scripts run in an environment
without Paddle (Python 3.10), and run_pretrain must set its threads first. Not entry points of the library, so not
here: scripts/demo.py and the shell scripts of scripts/ (:data:`NOT_ENTRY_POINTS`).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from ernie.utils import ArgumentParser, atomic_write, cli_main


@dataclass(frozen=True)
class EntryPoint:
    name: str  # scripts/<name>.py and the console-script function ernie.cli:<name>
    target: str  # "module:function": the main, called with no arguments (it parses sys.argv[1:])
    summary: str  # the docstring of the generated script
    script: bool = True  # False: a console script only
    before: str | None = None  # "module:function" run before the target's module is imported
    returns_status: bool = False  # the main returns the exit status

    @property
    def console(self) -> str:
        """The console-script name in ``[project.scripts]``."""
        return "ernie-" + self.name.replace("_", "-")

    @property
    def console_target(self) -> str:
        return f"ernie.cli:{self.name}"

    @property
    def script_path(self) -> str:
        """Relative to the repository root."""
        return f"scripts/{self.name}.py"


ENTRY_POINTS: tuple[EntryPoint, ...] = (
    EntryPoint(
        "trans_to_json",
        "data_tools.trans_to_json:main",
        "Raw text files -> a jsonl of documents: see data_tools/trans_to_json.py.",
        returns_status=True,
    ),
    EntryPoint(
        "build_vocab",
        "data_tools.vocab:main",
        "Build a vocab.txt + tokenizer_config.json from raw text: see data_tools/vocab.py.",
        returns_status=True,
    ),
    EntryPoint(
        "words_segmentation",
        "data_tools.segmentation:main",
        "Segment Chinese text into words: see data_tools/segmentation.py.",
        returns_status=True,
    ),
    EntryPoint(
        "create_pretraining_data",
        "data_tools.create_pretraining_data:main",
        "jsonl documents -> pretraining token files: see data_tools/create_pretraining_data.py.",
        returns_status=True,
    ),
    EntryPoint(
        "merge", "data_tools.merge:main", "Merge token corpora into one: see data_tools/merge.py.", returns_status=True
    ),
    EntryPoint(
        "run_pretrain",
        "ernie.training.trainer:main",
        "ERNIE 1.0 pretraining, PaddleNLP ernie-1.0 flags (+ --config YAML, --amp_dtype). See "
        "ernie/training/trainer.py.\n\n"
        "    python -m paddle.distributed.launch --nproc_per_node 2 scripts/run_pretrain.py "
        "--config CONFIG.yaml\n\n"
        "(configs/pretrain/: e.g. ernie-tiny-cpu.yaml; ernie-1.0-base-gpu.yaml on GPUs)",
        before="ernie.training.distributed:configure_threads",
    ),
    EntryPoint(
        "run_pretrain_trainer",
        "ernie.training.trainer:main",
        "ERNIE 1.0 pretraining under PaddleNLP's run_pretrain_trainer.py name: the same run as run_pretrain.py,\n"
        "which takes PaddleNLP's Trainer flag names (--per_device_train_batch_size, --learning_rate, --fp16,\n"
        "--gradient_accumulation_steps, ...) beside its own (docs/migrating.md).",
        before="ernie.training.distributed:configure_threads",
    ),
    EntryPoint(
        "plot_logs",
        "ernie.training.plot:main",
        "Draw loss / learning-rate curves of a pretraining run: see ernie/training/plot.py.\n\n"
        "    python scripts/plot_logs.py --log OUTPUT_DIR --output curves.png",
    ),
    EntryPoint(
        "gpu_selfcheck",
        "ernie.selfcheck:main",
        "The first command a GPU user runs: a few steps of a small ERNIE and ERNIE-base in fp32 / fp16 O1+O2 / "
        "bf16 O2,\nwith and without recompute, the opt-in attention kernels, resume, and data parallel on 2+ "
        "GPUs; one table, exit 1 on\nany failure, exit 0 with one line when no GPU is visible. See "
        "ernie/selfcheck.py.\n\n"
        "    python scripts/gpu_selfcheck.py                 # on a GPU machine (<= 5 minutes)\n"
        "    python scripts/gpu_selfcheck.py --device cpu    # the fp32 dry run on the CPU",
        returns_status=True,
    ),
    EntryPoint(
        "run_seq_cls",
        "ernie.finetune_cli:run_seq_cls",
        "Fine-tune for sequence classification: see ernie/finetune/seq_cls.py.",
    ),
    EntryPoint("run_ner", "ernie.finetune_cli:run_ner", "Fine-tune for NER: see ernie/finetune/ner.py."),
    EntryPoint("run_qa", "ernie.finetune_cli:run_qa", "Fine-tune for extractive QA: see ernie/finetune/qa.py."),
    EntryPoint(
        "convert_checkpoint", "ernie.convert:main", "Checkpoints both ways with HF transformers: see ernie/convert.py."
    ),
    EntryPoint("fill_mask", "ernie.fill_mask:main", "Top-k fillings of [MASK]ed characters: see ernie/fill_mask.py."),
    EntryPoint(
        "export_model",
        "ernie.deploy.export:main",
        "Export a fine-tuned model for Paddle Inference / ONNX Runtime: see ernie/deploy/export.py.",
    ),
    EntryPoint(
        "seq_cls_infer",
        "ernie.deploy.infer:main",
        "Sequence classification with an exported model: see ernie/deploy/infer.py.",
    ),
    EntryPoint(
        "qa_infer", "ernie.deploy.qa_infer:main", "Extractive QA with an exported model: see ernie/deploy/qa_infer.py."
    ),
    EntryPoint(
        "fastdeploy_seq_cls_infer",
        "ernie.deploy.fastdeploy_infer:seq_cls_main",
        "Sequence classification with FastDeploy (run by the FastDeploy environment's Python):\n"
        "see ernie/deploy/fastdeploy_infer.py.",
    ),
    EntryPoint(
        "fastdeploy_token_cls_infer",
        "ernie.deploy.fastdeploy_infer:token_cls_main",
        "Token classification (NER) with FastDeploy (run by the FastDeploy environment's Python):\n"
        "see ernie/deploy/fastdeploy_infer.py.",
    ),
    EntryPoint(
        "setup_envs",
        "ernie.deploy.envs:main",
        "Create or refresh the toolkit's side environments (FastDeploy, Paddle 2.6): see ernie/deploy/envs.py.",
        script=False,
    ),
)
BY_NAME = {ep.name: ep for ep in ENTRY_POINTS}

# Files of scripts/ that are not entry points of the library: the generator neither writes nor checks them.
NOT_ENTRY_POINTS = ("demo.py", "demo.sh", "install.sh", "test.sh", "setup_fastdeploy_env.sh")

SCRIPT_TEMPLATE = '''#!/usr/bin/env python
"""{summary}

Generated from the entry-point registry in ernie/cli.py (`python -m ernie.cli --write-scripts`): edit that, not this.
"""

import sys

from ernie.cli import run

if __name__ == "__main__":
    sys.exit(run("{name}"))
'''

PYPROJECT_HEADER = """[project.scripts]
# Generated from the entry-point registry in ernie/cli.py (`python -m ernie.cli --write-scripts`): the commands of
# scripts/ for an install without the source tree (same flags; `ernie-run-pretrain` also runs under
# `python -m paddle.distributed.launch "$(command -v ernie-run-pretrain)" ...`).
"""


def resolve(target: str) -> Callable:
    """The function a ``"module:function"`` string names, importing its module (Paddle too, for most mains)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def run(name: str, argv: list[str] | None = None) -> int:
    """Run the entry point ``name`` (its ``before`` set-up first) and return the exit status (see the module doc)."""
    ep = BY_NAME[name]
    if ep.before:
        resolve(ep.before)()
    main = resolve(ep.target)
    result = main() if argv is None else main(argv)
    return result if ep.returns_status else 0


def _console_script(ep: EntryPoint) -> Callable[[], int]:
    def console_script() -> int:
        return run(ep.name)

    console_script.__name__ = console_script.__qualname__ = ep.name
    console_script.__doc__ = f"The console script ``{ep.console}``: runs ``{ep.target}`` (see :func:`run`)."
    return console_script


# The console-script functions ``ernie.cli.<name>`` that [project.scripts] names, one per entry point.
for _ep in ENTRY_POINTS:
    globals()[_ep.name] = _console_script(_ep)
del _ep


def script_text(ep: EntryPoint) -> str:
    return SCRIPT_TEMPLATE.format(summary=ep.summary, name=ep.name)


def project_scripts() -> dict[str, str]:
    """``[project.scripts]`` as the registry has it: console-script name -> ``module:function``."""
    return {ep.console: ep.console_target for ep in ENTRY_POINTS}


def pyproject_section() -> str:
    return PYPROJECT_HEADER + "".join(f'{k} = "{v}"\n' for k, v in project_scripts().items())


def _replace_section(text: str, header: str, new: str) -> str:
    """``text`` with the TOML table that starts at the line ``header`` (up to the next table) replaced by ``new``."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == header), None)
    if start is None:
        return text.rstrip("\n") + "\n\n" + new
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    tail = lines[end:]
    return "".join(lines[:start]) + new + ("\n" if tail else "") + "".join(tail)


def check(root: str) -> list[str]:
    """What in ``root`` (a source tree) differs from the registry: one line per drifted file or console script."""
    # Python 3.11+; the FastDeploy environment (3.10) imports this module but never checks. mypy checks as 3.10.
    import tomllib  # type: ignore[import-not-found]

    problems = []
    for ep in ENTRY_POINTS:
        path = os.path.join(root, ep.script_path)
        if not ep.script:
            if os.path.exists(path):
                problems.append(f"{ep.script_path}: exists, but the registry has no script for {ep.name}")
            continue
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            problems.append(f"{ep.script_path}: missing")
            continue
        if text != script_text(ep):
            problems.append(f"{ep.script_path}: differs from the registry")
        elif not os.access(path, os.X_OK):
            problems.append(f"{ep.script_path}: not executable")
    scripts = {os.path.basename(ep.script_path) for ep in ENTRY_POINTS if ep.script}
    for fname in sorted(os.listdir(os.path.join(root, "scripts"))):
        if fname.endswith(".py") and fname not in scripts and fname not in NOT_ENTRY_POINTS:
            problems.append(f"scripts/{fname}: not in the registry (ernie/cli.py ENTRY_POINTS or NOT_ENTRY_POINTS)")
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        declared = tomllib.load(f).get("project", {}).get("scripts", {})
    wanted = project_scripts()
    for console in sorted(set(declared) | set(wanted)):
        if declared.get(console) != wanted.get(console):
            problems.append(
                f"pyproject.toml [project.scripts] {console}: {declared.get(console)!r}, "
                f"registry: {wanted.get(console)!r}"
            )
    return problems


def _write_if_changed(path: str, text: str, mode: int | None = None) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            same = f.read() == text
    except FileNotFoundError:
        same = False
    if same and (mode is None or os.stat(path).st_mode & 0o777 == mode):
        return False
    with atomic_write(path, "w") as f:
        f.write(text)
        if mode is not None:
            os.fchmod(f.fileno(), mode)
    return True


def write(root: str) -> list[str]:
    """Write scripts/<name>.py and pyproject.toml's ``[project.scripts]`` of ``root`` from the registry; returns the
    files changed. A script of scripts/ the registry does not know is left alone (:func:`check` names it)."""
    changed = []
    umask = os.umask(0)
    os.umask(umask)
    for ep in ENTRY_POINTS:
        if ep.script:
            path = os.path.join(root, ep.script_path)
            if _write_if_changed(path, script_text(ep), 0o777 & ~umask):
                changed.append(ep.script_path)
    path = os.path.join(root, "pyproject.toml")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if _write_if_changed(path, _replace_section(text, "[project.scripts]", pyproject_section())):
        changed.append("pyproject.toml")
    return changed


@cli_main
def main(argv: list[str] | None = None) -> int:
    """``python -m ernie.cli --write-scripts | --check [--root DIR]``: regenerate or check the registry's files."""
    p = ArgumentParser(allow_abbrev=False, prog="python -m ernie.cli", description=__doc__.split("\n\n")[0])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--write-scripts",
        action="store_true",
        help="write scripts/*.py and [project.scripts] of pyproject.toml from the registry",
    )
    what.add_argument("--check", action="store_true", help="list what differs from the registry; exit 1 if anything")
    what.add_argument("--list", action="store_true", help="print the registry: script, console script, main")
    p.add_argument("--root", default=".", help="the source tree (default: the current directory)")
    a = p.parse_args(argv)
    if a.list:
        for ep in ENTRY_POINTS:
            print(f"{ep.script_path if ep.script else '-':40} {ep.console:34} {ep.target}")
        return 0
    if not os.path.isfile(os.path.join(a.root, "pyproject.toml")):
        p.error(f"--root {a.root}: no pyproject.toml there (run from the source tree or pass --root)")
    if a.write_scripts:
        for path in write(a.root):
            print(f"wrote {path}")
    problems = check(a.root)
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
