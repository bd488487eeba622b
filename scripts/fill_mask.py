#!/usr/bin/env python
"""Entry point: see ernie/fill_mask.py (`python scripts/fill_mask.py --help`)."""
from ernie.fill_mask import main

if __name__ == "__main__":
    main()
