"""The wheels that install berthd in a guest without network: this project's own wheel (``pip wheel
--no-deps`` of the source tree this code runs from, so the guest runs the host's version) and the runtime
dependencies the guest engine needs (``pip download`` for the guest's CPython and manylinux x86_64; never
the desktop app's PySide6/qasync, nor paramiko, which only the host uses).

Cached in ``<cache>/wheels-<version>-<source digest>/`` (built in a temp directory and renamed into place), so
an edited source tree gives the guest a new wheel. A frozen bundle carries the same directory, built by
packaging/build-bundle.sh, in ``<bundle>/guest-wheels/``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from backend.frozen import is_frozen
from backend.machine.errors import MachineError

GUEST_PYTHON = "3.11"
"""CPython of the guest image (Debian 12)."""
GUEST_REQUIREMENTS = ("aiohttp>=3.9", "httpx>=0.27", "pyyaml>=6.0", "rich>=13", "zstandard>=0.22",
                      "pyroute2>=0.7")


def source_tree() -> Path:
    """The project directory this code runs from. Raises MachineError when it is not a source checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise MachineError(f"cannot build berthd for the machine: {root} is not a Berth source tree")
    return root


def _pip(args: list[str], cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], cwd=cwd,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise MachineError(f"pip {args[0]} failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")


def guest_wheels(cache: Path) -> list[Path]:
    """Every wheel the guest installs (``--no-deps``), built or downloaded once per Berth version (a frozen
    bundle's own). Raises MachineError when pip cannot build or fetch them, or the bundle has none."""
    if is_frozen():
        shipped = sorted((Path(sys.executable).parent / "guest-wheels").glob("wheels-*/*.whl"))
        if not shipped:
            raise MachineError("this installation carries no wheels for the machine's berthd (guest-wheels/)")
        return shipped
    root = source_tree()
    digest = hashlib.sha256()
    for path in sorted([root / "pyproject.toml", *(root / "backend").rglob("*.py")]):
        digest.update(f"{path.relative_to(root)} {path.stat().st_mtime_ns} {path.stat().st_size}\n".encode())
    final = cache / f"wheels-{metadata.version('berth')}-{digest.hexdigest()[:12]}"
    if not final.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".wheels-", dir=cache))
        try:
            with tempfile.TemporaryDirectory() as build:
                _pip(["wheel", "--no-deps", "-w", str(tmp), str(root)], Path(build))
            _pip(["download", "--only-binary=:all:", "--python-version", GUEST_PYTHON, "--implementation", "cp",
                  "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
                  "--platform", "manylinux_2_28_x86_64", "-d", str(tmp), *GUEST_REQUIREMENTS], root)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return sorted(final.glob("*.whl"))
