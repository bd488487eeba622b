#!/usr/bin/env python
"""Entry point: see data_tools/segmentation.py (`python scripts/words_segmentation.py --help`)."""
import sys

from data_tools.segmentation import main

if __name__ == "__main__":
    sys.exit(main())
