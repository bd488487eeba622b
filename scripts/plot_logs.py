#!/usr/bin/env python
"""Draw loss / learning-rate curves of a pretraining run: see ernie/training/plot.py.

    python scripts/plot_logs.py --log OUTPUT_DIR --output curves.png

Generated from the entry-point registry in ernie/cli.py (`python -m ernie.cli --write-scripts`): edit that, not this.
"""

import sys

from ernie.cli import run

if __name__ == "__main__":
    sys.exit(run("plot_logs"))
