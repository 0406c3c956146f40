#!/usr/bin/env bash
# macOS: wrap Berth.app in a compressed disk image with an /Applications link.
# Usage: bash packaging/macos/build-dmg.sh [OUT_DIR]   (after build-app.sh)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/dist}"
[ "$(uname -s)" = Darwin ] || { echo "build-dmg.sh runs on macOS" >&2; exit 2; }
version="$("$root/.venv/bin/python" -c 'from backend.version import VERSION; print(VERSION)')"
stage="$(mktemp -d)"
cp -R "$out/Berth.app" "$stage/"
ln -s /Applications "$stage/Applications"
hdiutil create -volname "Berth $version" -srcfolder "$stage" -fs HFS+ -format UDZO -ov "$out/Berth-$version.dmg"
rm -rf "$stage"
echo "dmg: $out/Berth-$version.dmg"
