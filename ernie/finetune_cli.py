"""The fine-tuning entry points, one function per task: ``run_seq_cls``, ``run_ner``, ``run_qa`` (what
scripts/run_seq_cls.py, run_ner.py, run_qa.py and the console scripts call).

Each parses ``argv`` (default ``sys.argv[1:]``: the shared flags of :mod:`ernie.finetune.args` plus the task's
``Options``), applies the process-level CPU settings, and runs :func:`ernie.finetune.runner.run`; it returns the
results dict (see the runner), and a bad flag or input is one ``error:`` line and a non-zero exit (``cli_main``).

This is the CLI layer on top of fine-tuning and deployment: the only fine-tuning module that imports the task
modules all together and :mod:`ernie.deploy` (``--do_export`` runs :func:`ernie.deploy.export.export_model`).
It sits beside :mod:`ernie.cli` in the CLI layer (docs/design.md, "Layers"); nothing in ``ernie.finetune`` imports it.
"""

from __future__ import annotations

import sys

from ernie.deploy.export import export_model
from ernie.finetune.args import parse_args
from ernie.finetune.ner import NerTask
from ernie.finetune.qa import QaTask
from ernie.finetune.runner import run, run_device
from ernie.finetune.seq_cls import SeqClsTask
from ernie.finetune.tasks import Task
from ernie.utils import cli_main
from ernie.utils.cpu_tuning import tune_cpu_math


def main_for(task_cls: type[Task], argv: list[str] | None, prog: str) -> dict:
    """Parse ``argv`` (the shared flags + the task's ``Options``) and run ``task_cls``."""
    args, options = parse_args(argv if argv is not None else sys.argv[1:], prog=prog, task_cls=task_cls)
    tune_cpu_math(run_device(args))  # process-level CPU settings, before the first GEMM
    return run(args, task_cls, options, exporter=export_model)


@cli_main
def run_seq_cls(argv: list[str] | None = None) -> dict:
    """Sequence (pair) classification: scripts/run_seq_cls.py."""
    return main_for(SeqClsTask, argv, prog="run_seq_cls.py")


@cli_main
def run_ner(argv: list[str] | None = None) -> dict:
    """Named-entity recognition: scripts/run_ner.py."""
    return main_for(NerTask, argv, prog="run_ner.py")


@cli_main
def run_qa(argv: list[str] | None = None) -> dict:
    """Extractive question answering: scripts/run_qa.py."""
    return main_for(QaTask, argv, prog="run_qa.py")
