#!/usr/bin/env python
"""Top-k fillings of [MASK]ed characters: see ernie/fill_mask.py.

Generated from the entry-point registry in ernie/cli.py (`python -m ernie.cli --write-scripts`): edit that, not this.
"""

import sys

from ernie.cli import run

if __name__ == "__main__":
    sys.exit(run("fill_mask"))
