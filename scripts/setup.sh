#!/usr/bin/env bash
# Create .venv and install the project with the tested, pinned dependency set (as Airflow does).
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian's chromium for the browser test (tests/test_e2e.py drives it with Playwright; never a downloaded browser).
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  if [ -n "$SUDO" ] && ! command -v sudo >/dev/null; then
    echo "warning: /usr/bin/chromium is missing and neither root nor sudo can install it; the browser test will fail" >&2
  else
    echo "installing Debian's chromium"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  fi
fi
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints/constraints-3.11.txt -e ".[dev]"
.venv/bin/python -m pip check
