#!/usr/bin/env bash
# README command two: install, lint, type-check, check the layers and run every test (unit, pipeline,
# end-to-end, the built wheel in a fresh venv), then the unit tests again on Python 3.12.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/browser.sh
bash scripts/prometheus.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"

# Python 3.12: the same unit tests on the same tested set (constraints-3.12.txt), without the torch extra
# (only a CUDA build of torch exists for 3.12 on PyPI's x86_64 index, several GB).
PY312=""
# the first python3.12 that really runs: pyenv has a shim for every version, runnable or not
for candidate in python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
  if "$candidate" -c "" >/dev/null 2>&1; then PY312=$candidate; break; fi
done
if [ -z "$PY312" ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "error: no python3.12 on the CI machine; the 3.12 run is part of CI" >&2
    exit 1
  fi
  echo "warning: no python3.12 here: skipping the Python 3.12 run (CI runs it)" >&2
  exit 0
fi
PYTHON=$PY312 VENV=.venv-3.12 EXTRAS=production,test bash scripts/setup.sh
.venv-3.12/bin/python -m pytest -m "not e2e and not distribution" "$@"
