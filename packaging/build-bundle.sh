#!/usr/bin/env bash
# Build the one-folder bundle (berthd, berth, berth-runtime, berth-desktop) with PyInstaller.
# Usage: bash packaging/build-bundle.sh [OUT_DIR]   (default dist/; the bundle is OUT_DIR/berth)
# Needs the project's venv with pyinstaller (pip install -e '.[package]').
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(realpath -m "${1:-$root/dist}")"
py="${PYTHON:-$root/.venv/bin/python}"
work="$(mktemp -d)"
stamp="$root/backend/_build_stamp.py"
trap 'rm -rf "$work" "$stamp"' EXIT
commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
printf '"""Written by packaging/build-bundle.sh."""\n\nCOMMIT = "%s"\n' "$commit" >"$stamp"
"$py" -m PyInstaller --noconfirm --clean --log-level WARN --distpath "$out" --workpath "$work" \
  "$root/packaging/pyinstaller/berth.spec"
# The machine's guest installs berthd from wheels of this same build (backend/machine/wheels.py).
wheels="$(cd "$root" && "$py" -c 'import sys; from pathlib import Path; from backend.machine.wheels import guest_wheels
print(guest_wheels(Path(sys.argv[1]))[0].parent)' "$work/wheels")"
rm -rf "$out/berth/guest-wheels" && mkdir -p "$out/berth/guest-wheels" && cp -r "$wheels" "$out/berth/guest-wheels/"
echo "bundle: $out/berth (commit $commit)"
