#!/usr/bin/env python
"""The first command a GPU user runs: a few steps of a small ERNIE and ERNIE-base in fp32 / fp16 O1+O2 / bf16 O2,
with and without recompute, the opt-in attention kernels, resume, and data parallel on 2+ GPUs; one table, exit 1 on
any failure, exit 0 with one line when no GPU is visible. See ernie/selfcheck.py.

    python scripts/gpu_selfcheck.py                 # on a GPU machine (<= 5 minutes)
    python scripts/gpu_selfcheck.py --device cpu    # the fp32 dry run on the CPU

Generated from the entry-point registry in ernie/cli.py (`python -m ernie.cli --write-scripts`): edit that, not this.
"""

import sys

from ernie.cli import run

if __name__ == "__main__":
    sys.exit(run("gpu_selfcheck"))
