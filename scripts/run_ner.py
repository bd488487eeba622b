#!/usr/bin/env python
"""Entry point: see ernie/finetune/ner.py (`python scripts/run_ner.py --help`)."""
from ernie.finetune.ner import main

if __name__ == "__main__":
    main()
