#!/usr/bin/env bash
# Remove what scripts/install.sh installed: the venv in /opt/berth, the command links in /usr/local/bin, the
# systemd units, the API socket and the berth group (when no user is in it any more). Images, containers and
# volumes in /var/lib/berth and the configuration in /etc/berth are kept unless --purge-data is given.
# Usage: sudo bash scripts/uninstall.sh [--purge-data]
set -euo pipefail
prefix=${BERTH_PREFIX:-/opt/berth}
bindir=${BERTH_BINDIR:-/usr/local/bin}
unitdir=${BERTH_UNITDIR:-/etc/systemd/system}
data_root=${BERTH_DATA_ROOT:-/var/lib/berth}
socket=${BERTH_SOCKET:-/run/berth/berth.sock}
group=${BERTH_GROUP:-berth}
purge=0
case "${1:-}" in
  --purge-data) purge=1 ;;
  "") ;;
  *) echo "usage: uninstall.sh [--purge-data]" >&2; exit 2 ;;
esac

if [ -d /run/systemd/system ] && [ "$unitdir" = /etc/systemd/system ]; then
  systemctl disable --now berthd.socket berthd.service >/dev/null 2>&1 || true
fi
rm -f "$unitdir/berthd.service" "$unitdir/berthd.socket"
if [ -d /run/systemd/system ] && [ "$unitdir" = /etc/systemd/system ]; then systemctl daemon-reload; fi
for cmd in berthd berth berth-runtime berth-desktop; do
  # Only our own links: a berth installed some other way is left alone.
  if [ -L "$bindir/$cmd" ] && [ "$(readlink "$bindir/$cmd")" = "$prefix/bin/$cmd" ]; then rm -f "$bindir/$cmd"; fi
done
rm -rf "$prefix"
rm -f "$socket"
if getent group "$group" >/dev/null && [ -z "$(getent group "$group" | cut -d: -f4)" ]; then groupdel "$group"; fi
if [ "$purge" = 1 ]; then
  if grep -q " $(realpath -m "$data_root")/" /proc/self/mountinfo; then
    echo "not removing $data_root: containers still have filesystems mounted there (stop berthd and them first)" >&2
    exit 1
  fi
  rm -rf "$data_root" /etc/berth
  echo "Berth removed, with its data ($data_root) and configuration"
else
  echo "Berth removed; your images, containers and volumes are kept in $data_root (--purge-data removes them)"
fi
