#!/usr/bin/env python
"""Sequence classification with an exported model: see ernie/deploy/infer.py.

Generated from the entry-point registry in ernie/cli.py (`python -m ernie.cli --write-scripts`): edit that, not this.
"""

import sys

from ernie.cli import run

if __name__ == "__main__":
    sys.exit(run("seq_cls_infer"))
