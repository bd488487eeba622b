#!/usr/bin/env python
"""Segment Chinese text into words: see data_tools/segmentation.py.

Generated from the entry-point registry in ernie/cli.py (`python -m ernie.cli --write-scripts`): edit that, not this.
"""

import sys

from ernie.cli import run

if __name__ == "__main__":
    sys.exit(run("words_segmentation"))
