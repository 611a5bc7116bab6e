#!/usr/bin/env bash
# Create .venv and install gpudoctor into it (idempotent). Needs python3 >= 3.10 with venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  echo "setup: python3-venv missing, installing it with apt" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv python3-pip >/dev/null; fi
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e ".[test]"
echo "setup: gpudoctor installed in .venv ($(.venv/bin/gpudoctor --version))"
