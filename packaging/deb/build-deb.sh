#!/usr/bin/env bash
# Build berth_<version>_<arch>.deb from a PyInstaller bundle (packaging/build-bundle.sh).
# Usage: bash packaging/deb/build-deb.sh BUNDLE_DIR OUT_DIR
# Layout: /usr/lib/berth (the bundle), /usr/bin/{berthd,berth,berth-runtime,berth-desktop} links,
# berthd.service + berthd.socket, the .desktop entry and hicolor icons.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bundle="$(realpath "$1")"
out="$(realpath -m "$2")"
py="${PYTHON:-$root/.venv/bin/python}"
version="$("$py" -c 'import sys; sys.path.insert(0, sys.argv[1]); from backend.version import VERSION; print(VERSION)' "$root")"
arch="$(dpkg --print-architecture)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

install -d "$stage/usr/lib" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/usr/share/applications" \
  "$stage/usr/share/icons/hicolor" "$stage/usr/share/doc/berth" "$stage/DEBIAN"
cp -a "$bundle" "$stage/usr/lib/berth"
for cmd in berthd berth berth-runtime berth-desktop; do ln -s "../lib/berth/$cmd" "$stage/usr/bin/$cmd"; done
install -m 0644 "$root/packaging/systemd/berthd.service" "$root/packaging/systemd/berthd.socket" \
  "$stage/lib/systemd/system/"
install -m 0644 "$root/packaging/linux/berth-desktop.desktop" "$stage/usr/share/applications/"
"$py" "$root/packaging/render-icons.py" "$stage/usr/share/icons/hicolor" >/dev/null
install -m 0644 "$root/README.md" "$stage/usr/share/doc/berth/README.md"
printf 'Berth %s\nLicense: Apache-2.0\nDocker default seccomp profile: see /usr/lib/berth/_internal/resources/seccomp/NOTICE\n' \
  "$version" >"$stage/usr/share/doc/berth/copyright"
size="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" "$here/control.in" >"$stage/DEBIAN/control"
for script in postinst prerm postrm; do install -m 0755 "$here/$script" "$stage/DEBIAN/$script"; done
mkdir -p "$out"
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$out/berth_${version}_${arch}.deb" >/dev/null
echo "$out/berth_${version}_${arch}.deb"
