#!/usr/bin/env bash
# Idempotent install of the toolkit into the current Python, offline-safe apart from the package registry.
#   bash scripts/install.sh            # runtime + LAC model files + deploy backends
#   bash scripts/install.sh demo       # ... plus the demo's classical baselines (scikit-learn, sklearn-crfsuite)
#   bash scripts/install.sh test       # ... plus the test extras (they include the demo's) and the pinned PaddleNLP
#                                      #     compatibility oracle
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

# Build tools first: the C++ helpers and LAC's sdist are built without isolation (LAC's setup.py needs pkg_resources).
pip_install "setuptools>=64,<81" wheel "pybind11>=2.10"
# Paddle: keep whatever the user installed (paddlepaddle-gpu included); otherwise the CPU wheel.
"$PY" -c "import paddle" 2>/dev/null || pip_install "paddlepaddle==3.3.1"
"$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('LAC') is None)" \
  || pip_install --no-build-isolation --no-deps "lac==2.1.2"
extras="deploy,logging"
case "${1:-}" in
  demo) extras="$extras,demo" ;;
  test) extras="$extras,demo,test,compat" ;;
esac
pip_install --no-build-isolation -e ".[$extras]"
