#!/usr/bin/env bash
# Create (once; reused afterwards) the FastDeploy environment (Python 3.10 + fastdeploy-python 1.0.7 + numpy<2, with
# this toolkit's `ernie` package linked in) and the Paddle 2.6 export environment, under ~/.cache/ernie-toolkit
# (ERNIE_TOOLKIT_CACHE overrides). Prints the FastDeploy environment's Python. Logic: ernie/deploy/envs.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m ernie.deploy.envs fastdeploy paddle26
