"""Console-script shims (``[project.scripts]`` in pyproject.toml): the same ``main()`` as the scripts in scripts/,
with an exit status of 0 on success (several ``main``s return their results, which ``sys.exit`` would print and turn
into status 1), and the pretraining thread set-up done before Paddle loads, as scripts/run_pretrain.py does."""
from __future__ import annotations

import importlib


def _main(module: str, name: str = "main") -> None:
    getattr(importlib.import_module(module), name)()


def run_pretrain() -> None:
    from ernie.training.distributed import configure_threads

    configure_threads()
    _main("ernie.training.trainer")


def run_seq_cls() -> None:
    _main("ernie.finetune.cli", "run_seq_cls")


def run_ner() -> None:
    _main("ernie.finetune.cli", "run_ner")


def export_model() -> None:
    _main("ernie.deploy.export")


def seq_cls_infer() -> None:
    _main("ernie.deploy.infer")


def setup_envs() -> None:
    _main("ernie.deploy.envs")


def gpu_selfcheck() -> None:
    import sys

    sys.exit(importlib.import_module("ernie.selfcheck").main())  # its status: 1 when a case failed


def fill_mask() -> None:
    _main("ernie.fill_mask")
