#!/usr/bin/env bash
# macOS: build Berth.app (PyInstaller BUNDLE of the spec) and check its runtime dependency, QEMU.
# Usage: bash packaging/macos/build-app.sh [OUT_DIR]   (run on a Mac with the project's venv)
# QEMU: VM mode runs the engine in a Linux VM with qemu-system-aarch64 (Apple silicon) or
# qemu-system-x86_64 (Intel), accelerated by Hypervisor.framework (hvf). Install it with: brew install qemu
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/dist}"
[ "$(uname -s)" = Darwin ] || { echo "build-app.sh runs on macOS" >&2; exit 2; }
case "$(uname -m)" in arm64) qemu=qemu-system-aarch64 ;; *) qemu=qemu-system-x86_64 ;; esac
command -v "$qemu" >/dev/null || echo "warning: $qemu not found: Berth's VM mode needs it (brew install qemu)" >&2
iconset="$(mktemp -d)/Berth.iconset"
mkdir -p "$iconset"
"$root/.venv/bin/python" "$root/packaging/render-icons.py" "$iconset/../hicolor" >/dev/null
for size in 16 32 128 256 512; do
  cp "$iconset/../hicolor/${size}x${size}/apps/berth.png" "$iconset/icon_${size}x${size}.png"
done
iconutil -c icns "$iconset" -o "$root/packaging/macos/Berth.icns"
bash "$root/packaging/build-bundle.sh" "$out"
echo "app: $out/Berth.app"
