#!/usr/bin/env bash
# Install Berth on a fresh Debian/Ubuntu machine into /opt/berth and link its commands into
# /usr/local/bin. Needs root. Usage: sudo bash scripts/install.sh   (scripts/uninstall.sh removes it)
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
prefix=${BERTH_PREFIX:-/opt/berth}

debs=(python3 python3-venv python3-pip libseccomp2 iproute2 iptables procps util-linux tini
      qemu-system-x86 qemu-utils  # berth machine (the VM mode)
      # the desktop app (PySide6's Qt takes these from the system)
      libgl1 libegl1 libfontconfig1 libfreetype6 libxkbcommon0 libxkbcommon-x11-0 libdbus-1-3 libx11-xcb1
      libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-shape0
      libxcb-xinerama0 libxcb-xkb1)
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
for cmd in berthd berth berth-runtime berth-desktop; do
  ln -sf "$prefix/bin/$cmd" "${BERTH_BINDIR:-/usr/local/bin}/$cmd"
done
# The socket's group: its members use Berth without sudo (the desktop app runs as the user).
getent group berth >/dev/null || groupadd --system berth
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then usermod -aG berth "$SUDO_USER"; fi
# systemd units for machines that run systemd (enable them with: systemctl enable --now berthd.socket);
# the commands are linked in /usr/local/bin here, where the .deb puts them in /usr/bin.
if [ -d /run/systemd/system ]; then
  for unit in berthd.service berthd.socket; do
    sed 's#/usr/bin/berthd#/usr/local/bin/berthd#' "$src/packaging/systemd/$unit" >"/etc/systemd/system/$unit"
    chmod 0644 "/etc/systemd/system/$unit"
  done
  systemctl daemon-reload
fi
echo "Berth installed in $prefix"
