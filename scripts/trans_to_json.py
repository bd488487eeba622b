#!/usr/bin/env python
"""Raw text files -> a jsonl of documents: see data_tools/trans_to_json.py.

Generated from the entry-point registry in ernie/cli.py (`python -m ernie.cli --write-scripts`): edit that, not this.
"""

import sys

from ernie.cli import run

if __name__ == "__main__":
    sys.exit(run("trans_to_json"))
