#!/usr/bin/env python
"""Sequence classification with FastDeploy (run by the FastDeploy environment's Python):
see ernie/deploy/fastdeploy_infer.py.

Generated from the entry-point registry in ernie/cli.py (`python -m ernie.cli --write-scripts`): edit that, not this.
"""

import sys

from ernie.cli import run

if __name__ == "__main__":
    sys.exit(run("fastdeploy_seq_cls_infer"))
