#!/usr/bin/env python
"""ERNIE 1.0 pretraining under PaddleNLP's run_pretrain_trainer.py name: the same run as run_pretrain.py,
which takes PaddleNLP's Trainer flag names (--per_device_train_batch_size, --learning_rate, --fp16,
--gradient_accumulation_steps, ...) beside its own (docs/migrating.md).

Generated from the entry-point registry in ernie/cli.py (`python -m ernie.cli --write-scripts`): edit that, not this.
"""

import sys

from ernie.cli import run

if __name__ == "__main__":
    sys.exit(run("run_pretrain_trainer"))
