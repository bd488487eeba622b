#!/usr/bin/env python
"""jsonl documents -> pretraining token files: see data_tools/create_pretraining_data.py.

Generated from the entry-point registry in ernie/cli.py (`python -m ernie.cli --write-scripts`): edit that, not this.
"""

import sys

from ernie.cli import run

if __name__ == "__main__":
    sys.exit(run("create_pretraining_data"))
