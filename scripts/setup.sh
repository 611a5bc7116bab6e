#!/usr/bin/env bash
# Create .venv and install gpudoctor into it (idempotent). Needs python3 >= 3.10 with venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  echo "setup: python3-venv missing, installing it with apt" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv python3-pip >/dev/null; fi
fi
# libvirt-python (the `vm` and `test` extras) compiles against libvirt's headers: libvirt-dev, pkg-config, a C compiler
BUILD_DEPS=(libvirt-dev pkg-config gcc python3-dev)
missing=()
for p in "${BUILD_DEPS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]} with apt (libvirt-python builds against them)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing ${missing[*]} (needed to build libvirt-python); install them as root" >&2
  fi
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# editable in "compat" mode: a .pth that puts this checkout on sys.path. The default ("strict") mode
# installs an import hook whose module pulls pathlib and importlib.util into every start of the tool
# (10 ms of CPU per `gpudoctor check`, measured with benchmarks/bench_startup.py).
# setuptools calls compat mode transitional: where a later setuptools refuses it, the default mode is used.
.venv/bin/python -m pip install -q --config-settings editable_mode=compat -e ".[test]" 2>/dev/null \
  || .venv/bin/python -m pip install -q -e ".[test]"
echo "setup: gpudoctor installed in .venv ($(.venv/bin/gpudoctor --version))"
