#!/usr/bin/env bash
# Install every test dependency on a fresh Debian/Ubuntu machine and run the whole suite.
# Needs root (apt-get, namespaces, mounts, cgroups). Usage: sudo bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(python3 python3-venv python3-pip runc crun busybox-static docker-registry xvfb procps iproute2
      libseccomp2 util-linux skopeo umoci apache2-utils)
missing=()
for d in "${debs[@]}"; do dpkg -s "$d" >/dev/null 2>&1 || missing+=("$d"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# Byte-compile once: the runtime's cold start must not pay for compiling (PYTHONDONTWRITEBYTECODE may be set).
.venv/bin/python -m compileall -q backend app >/dev/null

echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== import-linter"; .venv/bin/lint-imports --no-cache
echo "== pytest"; .venv/bin/python -m pytest "$@"
