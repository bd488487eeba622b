#!/usr/bin/env python
"""Entry point: see ernie/deploy/infer.py (`python scripts/seq_cls_infer.py --help`)."""
from ernie.deploy.infer import main

if __name__ == "__main__":
    main()
