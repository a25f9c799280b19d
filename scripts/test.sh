#!/usr/bin/env bash
# Installs everything, then runs the whole test suite: lint (ruff), types
# (mypy --strict), layering (import-linter), then pytest (unit, integration
# and, as root, the network-namespace tests).  Exit 0 only if all pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff";   ruff check .
echo "== mypy";   mypy
echo "== import-linter"; lint-imports
echo "== pytest"
# pytest exits 5 when it collected no test: that is a failure here too.
pytest -q -p no:cacheprovider "$@"
