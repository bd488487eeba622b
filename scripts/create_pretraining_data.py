#!/usr/bin/env python
"""Entry point: see data_tools/create_pretraining_data.py (`python scripts/create_pretraining_data.py --help`)."""
import sys

from data_tools.create_pretraining_data import main

if __name__ == "__main__":
    sys.exit(main())
