#!/usr/bin/env bash
# Install every test dependency on a fresh Debian/Ubuntu machine and run the whole suite.
# Needs root (apt-get, namespaces, mounts, cgroups). Usage: sudo bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(python3 python3-venv python3-pip runc crun busybox-static docker-registry xvfb procps iproute2
      libseccomp2 util-linux skopeo umoci apache2-utils docker.io docker-compose tini iptables openssl debootstrap
      desktop-file-utils systemd podman openssh-server
      qemu-system-x86 qemu-utils e2fsprogs
      libgl1 libegl1 libfontconfig1 libfreetype6 libxkbcommon0 libdbus-1-3)
missing=()
for d in "${debs[@]}"; do dpkg -s "$d" >/dev/null 2>&1 || missing+=("$d"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Installing must not start services (docker.io would start the host's dockerd and containerd; the
  # tests run a dockerd of their own): a policy-rc.d that refuses every start, only while installing.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    own_policy=1
    trap 'rm -f "$policy"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    printf '#!/bin/sh\n# berth scripts/test.sh: no service starts while installing test dependencies\nexit 101\n' >"$policy"
    chmod 755 "$policy"
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [ "$own_policy" = 1 ]; then
    rm -f "$policy"
    trap - EXIT INT TERM
  fi
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
