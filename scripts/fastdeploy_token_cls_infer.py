#!/usr/bin/env python
"""Entry point (FastDeploy environment's Python): see ernie/deploy/fastdeploy_infer.py (`--help`)."""
from ernie.deploy.fastdeploy_infer import token_cls_main

if __name__ == "__main__":
    token_cls_main()
