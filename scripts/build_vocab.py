#!/usr/bin/env python
"""Build a vocab.txt + tokenizer_config.json from raw text: see data_tools/vocab.py.

Generated from the entry-point registry in ernie/cli.py (`python -m ernie.cli --write-scripts`): edit that, not this.
"""

import sys

from ernie.cli import run

if __name__ == "__main__":
    sys.exit(run("build_vocab"))
