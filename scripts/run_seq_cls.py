#!/usr/bin/env python
"""Entry point: see ernie/finetune/seq_cls.py (`python scripts/run_seq_cls.py --help`)."""
from ernie.finetune.seq_cls import main

if __name__ == "__main__":
    main()
