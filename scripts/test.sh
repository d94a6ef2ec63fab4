#!/usr/bin/env bash
# Sets up a virtual environment (if needed) and runs every check: lint, types, the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy --strict src
DBOS__DISABLE_TELEMETRY=true .venv/bin/python -m pytest -q "$@"
