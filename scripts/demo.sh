#!/usr/bin/env bash
# README command one: install, start the embedded stack and replay the level-1 scenario.
# Extra arguments go to `airflow-mlops demo` (e.g. --keep-ui, --days 40).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/airflow-mlops demo "$@"
