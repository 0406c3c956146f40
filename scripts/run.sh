#!/usr/bin/env bash
# Run Berth after scripts/install.sh: berthd (through systemd when the unit is installed, else in the
# foreground or, with a display, in the background), and the desktop app when there is a display.
# Usage: sudo bash scripts/run.sh
set -euo pipefail
socket=/run/berth/berth.sock

if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  if [ -d /run/systemd/system ] && [ -f /etc/systemd/system/berthd.service ]; then
    systemctl start berthd
    echo "berthd is running (systemctl status berthd); DOCKER_HOST=unix://$socket"
    exit 0
  fi
  exec berthd  # no display: the daemon in the foreground
fi

if ! [ -S "$socket" ]; then
  if [ -d /run/systemd/system ] && [ -f /etc/systemd/system/berthd.service ]; then
    systemctl start berthd
  else
    nohup berthd >>/var/log/berthd.log 2>&1 &
  fi
  for _ in $(seq 100); do [ -S "$socket" ] && break; sleep 0.1; done
fi
# The dashboard and tray as the user who asked for them (the socket's group "berth" grants access).
user=${SUDO_USER:-root}
exec sudo -u "$user" --preserve-env=DISPLAY,WAYLAND_DISPLAY,XDG_RUNTIME_DIR,DBUS_SESSION_BUS_ADDRESS \
  berth-desktop -H "unix://$socket"
