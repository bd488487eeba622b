#!/usr/bin/env python
"""Extractive QA with an exported model: see ernie/deploy/qa_infer.py.

Generated from the entry-point registry in ernie/cli.py (`python -m ernie.cli --write-scripts`): edit that, not this.
"""

import sys

from ernie.cli import run

if __name__ == "__main__":
    sys.exit(run("qa_infer"))
