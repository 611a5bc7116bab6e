#!/usr/bin/env bash
# Install everything the tests need (Python packages, the lab's apt packages and
# guest kernel) and run the whole suite, lab included. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -f lab/setup.sh ]; then
  bash lab/setup.sh
fi
.venv/bin/ruff check doctor checks remediations tests lab 2>/dev/null || .venv/bin/ruff check doctor checks remediations tests
.venv/bin/mypy
exec .venv/bin/python -m pytest -ra "$@"
