#!/usr/bin/env python
"""Entry point: see data_tools/merge.py (`python scripts/merge.py --help`)."""
import sys

from data_tools.merge import main

if __name__ == "__main__":
    sys.exit(main())
