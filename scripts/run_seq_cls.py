#!/usr/bin/env python
"""Fine-tune for sequence classification: see ernie/finetune/seq_cls.py.

Generated from the entry-point registry in ernie/cli.py (`python -m ernie.cli --write-scripts`): edit that, not this.
"""

import sys

from ernie.cli import run

if __name__ == "__main__":
    sys.exit(run("run_seq_cls"))
