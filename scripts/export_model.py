#!/usr/bin/env python
"""Export a fine-tuned model for Paddle Inference / ONNX Runtime: see ernie/deploy/export.py.

Generated from the entry-point registry in ernie/cli.py (`python -m ernie.cli --write-scripts`): edit that, not this.
"""

import sys

from ernie.cli import run

if __name__ == "__main__":
    sys.exit(run("export_model"))
