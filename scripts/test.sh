#!/usr/bin/env bash
# The test command (README, .ci/run): install the toolkit with its test extras, lint and type-check, then run the
# whole suite. A lint, format or type error fails the command like a failing test (pytest still runs, so one run
# shows both). The checks and their configuration: pyproject.toml [tool.ruff] and [tool.mypy].
#   bash scripts/test.sh                 # everything, as CI runs it
#   bash scripts/test.sh -m "not slow"   # extra arguments go to pytest
#   ERNIE_LINT=0 bash scripts/test.sh    # tests only (local iteration; CI never sets it)
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test || { echo "error: install failed" >&2; exit 1; }
lint_rc=0
if [ "${ERNIE_LINT:-1}" != 0 ]; then
  echo "lint: ruff check, ruff format --check, mypy" >&2
  python -m ruff check . || lint_rc=1
  python -m ruff format --check . || lint_rc=1
  python -m mypy || lint_rc=1
  [ "$lint_rc" -eq 0 ] || echo "error: lint/type check failed (fix it, or 'ruff check --fix' / 'ruff format')" >&2
fi
python -m pytest -ra "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  # pytest's "no tests collected": only possible with a filter that matched nothing; say so, don't fail the run.
  echo "pytest collected no tests for: $*" >&2
  rc=0
fi
if [ "$rc" -eq 0 ] && [ "$lint_rc" -ne 0 ]; then rc=1; fi
exit "$rc"
