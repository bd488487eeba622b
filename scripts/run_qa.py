#!/usr/bin/env python
"""Entry point: see ernie/finetune/cli.py (`python scripts/run_qa.py --help`)."""
from ernie.finetune.cli import run_qa as main

if __name__ == "__main__":
    main()
