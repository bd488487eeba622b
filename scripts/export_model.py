#!/usr/bin/env python
"""Entry point: see ernie/deploy/export.py (`python scripts/export_model.py --help`)."""
from ernie.deploy.export import main

if __name__ == "__main__":
    main()
