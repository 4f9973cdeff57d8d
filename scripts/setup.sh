#!/usr/bin/env bash
# Create a virtualenv and install the project with the tested, pinned dependency set (as Airflow does):
# constraints/constraints-<python>.txt. Never asks for root.
#   PYTHON   the interpreter (default python3.11; 3.11 to 3.13 are supported, each with its constraints file)
#   VENV     where (default .venv)
#   EXTRAS   what to install on top of the core (default dev: torch, production, test and lint tools)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3.11
  command -v "$PYTHON" >/dev/null || PYTHON=python3
fi
VERSION=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-dev}
CONSTRAINTS=constraints/constraints-$VERSION.txt
if [ ! -f "$CONSTRAINTS" ]; then
  echo "no tested dependency set for Python $VERSION: use one of $(ls constraints | tr '\n' ' ')(PYTHON=python3.11)" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
HAS=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$HAS" != "$VERSION" ]; then
  echo "$VENV has Python $HAS, not $VERSION: remove it, or choose another VENV=" >&2
  exit 1
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# Strict editable mode: the package is linked from build/, so src/ (and the egg-info setuptools leaves
# there) is not on sys.path, and Airflow finds the entry points once, as in a regular install.
"$VENV/bin/python" -m pip install --quiet -c "$CONSTRAINTS" --config-settings editable_mode=strict -e ".[$EXTRAS]"
"$VENV/bin/python" -m pip check
