#!/usr/bin/env bash
# The whole test suite: set-up, lint, type check and tests. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/postgres.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check healthmesh tests benchmarks examples
echo "== mypy"; mypy
echo "== pytest"; pytest "$@"
