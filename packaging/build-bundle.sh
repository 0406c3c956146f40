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
echo "bundle: $out/berth (commit $commit)"
