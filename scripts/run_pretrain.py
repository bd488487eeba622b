#!/usr/bin/env python
"""ERNIE 1.0 pretraining, PaddleNLP ernie-1.0 flags (+ --config YAML, --amp_dtype). See ernie/training/trainer.py.

    python -m paddle.distributed.launch --nproc_per_node 2 scripts/run_pretrain.py --config CONFIG.yaml

(configs/pretrain/: e.g. ernie-tiny-cpu.yaml; ernie-1.0-base-gpu.yaml on GPUs)

Generated from the entry-point registry in ernie/cli.py (`python -m ernie.cli --write-scripts`): edit that, not this.
"""

import sys

from ernie.cli import run

if __name__ == "__main__":
    sys.exit(run("run_pretrain"))
