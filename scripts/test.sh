#!/usr/bin/env bash
# README command two: install, lint, type-check, check the layers, check this project as a user's CI
# would (airflow-mlops ci: specs, DAG files, the churn pipeline end to end on a sample) and run every
# test (unit, pipeline, end-to-end, the built wheel in a fresh venv). The project check and two lanes of
# tests run beside the others: most of them wait on Airflow's scheduler, so the cores have room. The wheel
# is installed on Python 3.12 with constraints-3.12.txt and the steps' tests run there too, so CI covers a
# second Python.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/browser.sh
bash scripts/prometheus.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
# airflow-mlops ci on this project (its own throwaway stack, no ports), beside the tests
mkdir -p .cache/ci
.venv/bin/airflow-mlops ci . --junit .cache/ci/ci.xml --log .cache/ci/run.log > .cache/ci/summary.txt 2>&1 &
CI_CHECK=$!

# the first python3.12 that really runs: pyenv has a shim for every version, runnable or not
PY312=""
for candidate in python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
  if "$candidate" -c "" >/dev/null 2>&1; then PY312=$(command -v "$candidate"); break; fi
done
if [ -n "$PY312" ]; then
  export DIST_PYTHON=$PY312
elif [ "${CI:-}" = "true" ]; then
  echo "error: no python3.12 on the CI machine; the wheel's test on Python 3.12 is part of CI" >&2
  exit 1
else
  echo "warning: no python3.12 here: the wheel is tested on $(.venv/bin/python -V) only (CI uses 3.12)" >&2
fi
# Three lanes of pytest at once, as none shares a port, stack or folder with another: the built wheel's tests
# (a fresh venv: mostly pip, then a project's CI run), the tests that run Airflow's own services (they mostly
# wait on its scheduler) and the rest. (Exit status 5: the arguments selected no test of that lane.)
.venv/bin/python -m pytest "$@" -m distribution > .cache/ci/distribution.txt 2>&1 &
DIST_TESTS=$!
.venv/bin/python -m pytest "$@" -m "stack and not distribution" > .cache/ci/stack.txt 2>&1 &
STACK_TESTS=$!
status=0
.venv/bin/python -m pytest "$@" -m "not stack and not distribution" || status=$?
if [ "$status" = 5 ]; then status=0; fi
for lane in "$STACK_TESTS:stack" "$DIST_TESTS:distribution"; do
  lane_status=0
  wait "${lane%%:*}" || lane_status=$?
  cat ".cache/ci/${lane#*:}.txt"
  if [ "$lane_status" != 0 ] && [ "$lane_status" != 5 ]; then status=1; fi
done
wait "$CI_CHECK" || status=1
cat .cache/ci/summary.txt
exit "$status"
