#!/usr/bin/env bash
# The main job on the built-in data (README): install, then the whole flow, offline, on the CPU.
#   bash scripts/demo.sh                     # outputs in output/demo; rerun to continue an interrupted demo
#   bash scripts/demo.sh --fresh             # start over; other flags: python scripts/demo.py --help
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh demo   # with the demo extra: the classical baselines of the results table
exec python scripts/demo.py "$@"
