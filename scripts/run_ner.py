#!/usr/bin/env python
"""Entry point: see ernie/finetune/cli.py (`python scripts/run_ner.py --help`)."""
from ernie.finetune.cli import run_ner as main

if __name__ == "__main__":
    main()
