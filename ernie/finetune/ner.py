"""Named-entity recognition (character BIO tagging) fine-tuning: the logic of scripts/run_ner.py.

    python scripts/run_ner.py --dataset peoples_daily_ner --model_name_or_path output/model_last \
        --output_dir output/ner --do_train --do_eval --do_predict
"""
from __future__ import annotations

from ernie.utils import cli_main

from .data import NER
from .runner import main_for


@cli_main
def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run; returns the results dict (see :func:`runner.run`)."""
    return main_for(NER, argv, prog="run_ner.py")
