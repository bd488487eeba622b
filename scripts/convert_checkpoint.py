#!/usr/bin/env python
"""Entry point: see ernie/convert.py (`python scripts/convert_checkpoint.py --help`)."""
from ernie.convert import main

if __name__ == "__main__":
    main()
