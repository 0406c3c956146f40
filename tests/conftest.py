"""Root fixtures shared by every test suite.

- Tests marked ``root`` are skipped, with the reason printed in the summary, unless the effective uid
  is 0. (The markers themselves are declared in pyproject.toml.)
- ``test_cache_dir``: ``~/.cache/berth-tests``, created; survives between runs.
- ``busybox_rootfs``: a rootfs built once from Debian's busybox-static into the cache directory
  (see tests/fixtures/rootfs.py). Tests must not write into it; copy it to write.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fixtures.rootfs import DEFAULT_BUSYBOX, build_busybox_rootfs, default_cache_dir

# Shared fixtures: a local registry (with and without auth) and locally built test images.
pytest_plugins = ["tests.fixtures.registry", "tests.fixtures.images", "tests.fixtures.dockerd", "tests.fixtures.berthd",
                  "tests.fixtures.debian_images"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", default=False,
                     help="soak runs: many more fuzzing examples and fault-injection rounds (tests/security)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None and os.geteuid() != 0:
        pytest.skip(f"needs root (marked 'root'; effective uid is {os.geteuid()})")


@pytest.fixture(scope="session")
def test_cache_dir() -> Path:
    """``~/.cache/berth-tests`` (or ``$XDG_CACHE_HOME/berth-tests``), created if missing."""
    path = default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def busybox_rootfs(test_cache_dir: Path) -> Path:
    """Path of the cached busybox rootfs; read-only use. Skips if busybox-static is not installed."""
    if not DEFAULT_BUSYBOX.exists():
        pytest.skip(f"busybox-static is not installed ({DEFAULT_BUSYBOX} missing)")
    return build_busybox_rootfs(test_cache_dir, DEFAULT_BUSYBOX)
