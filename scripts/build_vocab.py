#!/usr/bin/env python
"""Build a vocab.txt + tokenizer_config.json from raw text: see data_tools/vocab.py."""
import sys

from data_tools.vocab import main

if __name__ == "__main__":
    sys.exit(main())
