#!/usr/bin/env python
"""Entry point: see ernie/finetune/qa.py (`python scripts/run_qa.py --help`)."""
from ernie.finetune.qa import main

if __name__ == "__main__":
    main()
