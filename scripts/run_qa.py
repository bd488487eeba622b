#!/usr/bin/env python
"""Fine-tune for extractive QA: see ernie/finetune/qa.py.

Generated from the entry-point registry in ernie/cli.py (`python -m ernie.cli --write-scripts`): edit that, not this.
"""

import sys

from ernie.cli import run

if __name__ == "__main__":
    sys.exit(run("run_qa"))
