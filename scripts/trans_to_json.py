#!/usr/bin/env python
"""Entry point: see data_tools/trans_to_json.py (`python scripts/trans_to_json.py --help`)."""
import sys

from data_tools.trans_to_json import main

if __name__ == "__main__":
    sys.exit(main())
