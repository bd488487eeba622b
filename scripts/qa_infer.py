#!/usr/bin/env python
"""Entry point: see ernie/deploy/qa_infer.py (`python scripts/qa_infer.py --help`)."""
from ernie.deploy.qa_infer import main

if __name__ == "__main__":
    main()
