#!/usr/bin/env bash
# Run the hostile-input and snapshot tests under the distribution's own Python as well
# (/usr/bin/python3: Debian 12 ships 3.11.2, which has no tarfile.data_filter; that is where a
# crafted snapshot once wrote outside its folder). Used by scripts/test.sh before the main suite.
#   - /usr/bin/python3 missing: nothing to do (said so).
#   - it is the interpreter .venv already runs on: the main suite covers it (said so).
#   - otherwise: .venv-debian is made with `/usr/bin/python3 -m venv` (python3-venv installed
#     with apt when missing and we are root), gpudoctor installed into it, the tests run there.
set -euo pipefail
cd "$(dirname "$0")/.."
SYSPY=${SYSTEM_PYTHON:-/usr/bin/python3}
TESTS=(tests/test_hostile_inputs.py tests/test_snapshot.py)
if [ ! -x "$SYSPY" ]; then
  echo "test_system_python: no $SYSPY on this machine; the main suite's Python is the only one" >&2
  exit 0
fi
ident='import sys; print(sys.base_prefix, sys.version)'
if [ -x .venv/bin/python ] && [ "$("$SYSPY" -c "$ident")" = "$(.venv/bin/python -c "$ident")" ]; then
  echo "test_system_python: .venv already runs on $SYSPY ($("$SYSPY" -V)); the main suite covers it" >&2
  exit 0
fi
if ! "$SYSPY" -c 'import venv, ensurepip' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test_system_python: $SYSPY has no venv/ensurepip, installing python3-venv with apt" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else
    echo "test_system_python: $SYSPY has no venv module; install python3-venv (as root: apt-get install python3-venv)" >&2
    exit 1
  fi
fi
if [ ! -x .venv-debian/bin/python ] || [ "$(.venv-debian/bin/python -c "$ident")" != "$("$SYSPY" -c "$ident")" ]; then
  rm -rf .venv-debian
  "$SYSPY" -m venv .venv-debian
fi
.venv-debian/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv-debian/bin/python -m pip install -q -e ".[test]"
echo "test_system_python: running ${TESTS[*]} under $("$SYSPY" -V) ($SYSPY)" >&2
.venv-debian/bin/python -m pytest -q -p no:cacheprovider "${TESTS[@]}"
