#!/usr/bin/env bash
# Installs everything, then runs the main job: the lab demo (a 3-node cluster
# in network namespaces enforcing the recipe policies; Ctrl-C tears it down).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/stockade demo "$@"
