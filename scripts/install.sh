#!/usr/bin/env bash
# Install Berth on a fresh Debian/Ubuntu machine into /opt/berth and link its commands into
# /usr/local/bin. Needs root. Usage: sudo bash scripts/install.sh
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
prefix=${BERTH_PREFIX:-/opt/berth}

debs=(python3 python3-venv python3-pip libseccomp2 iproute2 iptables procps util-linux tini)
missing=()
for d in "${debs[@]}"; do dpkg -s "$d" >/dev/null 2>&1 || missing+=("$d"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ -x "$prefix/bin/python" ] || python3 -m venv "$prefix"
"$prefix/bin/python" -m pip install -q --upgrade pip
"$prefix/bin/python" -m pip install -q "$src"
for cmd in berthd berth berth-runtime; do
  ln -sf "$prefix/bin/$cmd" "/usr/local/bin/$cmd"
done
# A systemd unit for machines that run systemd (enable it with: systemctl enable --now berthd).
if [ -d /run/systemd/system ]; then
  install -m 0644 "$src/packaging/systemd/berthd.service" /etc/systemd/system/berthd.service
  systemctl daemon-reload
fi
echo "Berth installed in $prefix"
