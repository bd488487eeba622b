#!/usr/bin/env python
"""Entry point: see ernie/finetune/cli.py (`python scripts/run_seq_cls.py --help`)."""
from ernie.finetune.cli import run_seq_cls as main

if __name__ == "__main__":
    main()
