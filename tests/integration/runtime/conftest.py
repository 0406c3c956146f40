"""Fixtures for the OCI runtime tests (tests/integration/runtime).

- ``runtime``: parametrized ``["berth", "runc"]``; a :class:`Runtime` with its own ``--root`` state dir.
  Select one with ``-k runc`` or ``-k berth``.
- ``reference``: runc, to compare against, when ``runtime`` is not runc itself (else None).
- ``make_bundle``: a :class:`BundleFactory`; every bundle gets a unique container id and cgroupsPath.
- ``berth``: berth-runtime alone, for the berth-only modules. ``BERTH_TEST_RUNTIME=runc`` points it at
  runc instead, to check that a test's expectations hold against a known-good runtime.

Teardown (always, even after a failure): ``delete --force`` of every container the test touched, SIGKILL
by pid of anything left in its cgroups or recorded as its init, removal of its cgroup directories in
every hierarchy, lazy unmount of any mount that leaked into the host under the test's directories, and
reaping of any container init that is a child of the test process.

The test process is deliberately *not* a child subreaper: detached container processes (inits after
``create``, ``exec -d`` processes) would become its zombies, and runc's ``delete --force`` waits ten
seconds for a zombie ``exec -d`` process that nobody reaps. Host PID 1 reaps them instead.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.runtime.harness import (
    RUNTIME_NAMES,
    BundleFactory,
    Runtime,
    host_mounts,
    remove_empty_parent,
    runtime_binary,
    umount_detach,
)


@pytest.fixture(scope="session", autouse=True)
def _cgroup_parent() -> Iterator[None]:
    """Remove the (then empty) /berth-test parent cgroups at the end of the session."""
    yield
    if os.geteuid() == 0:
        remove_empty_parent()


def _make_runtime(name: str, tmp_path: Path) -> Runtime:
    binary = runtime_binary(name)
    if binary is None:
        pytest.skip(f"{name} runtime binary not found")
    return Runtime(name, binary, tmp_path / f"rt-{name}")


def _leaked_mounts(before: set[int], roots: list[Path]) -> list[str]:
    leaked = []
    for m in host_mounts():
        if m.mount_id in before:
            continue
        under = any(m.mount_point == str(r) or m.mount_point.startswith(f"{r}/") for r in roots)
        if under or m.mount_point.startswith("/tmp/berth-"):
            leaked.append(m.mount_point)
    return leaked


@pytest.fixture
def _host_guard(tmp_path: Path, busybox_rootfs: Path) -> Iterator[None]:
    """Unmount (lazily) anything a runtime leaked into the host mount namespace during the test."""
    before = {m.mount_id for m in host_mounts()}
    yield
    leaked = _leaked_mounts(before, [tmp_path, busybox_rootfs])
    for point in sorted(leaked, key=len, reverse=True):
        with contextlib.suppress(OSError):
            umount_detach(point)
    if leaked:
        warnings.warn(f"runtime leaked mounts into the host namespace: {leaked}", stacklevel=1)


@pytest.fixture
def make_bundle(tmp_path: Path, busybox_rootfs: Path, _host_guard: None) -> Iterator[BundleFactory]:
    factory = BundleFactory(tmp_path / "bundles", busybox_rootfs)
    yield factory
    problems = factory.cleanup()
    if problems:
        warnings.warn(f"cgroup cleanup problems: {problems}", stacklevel=1)


def _finish(rt: Runtime) -> None:
    problems = rt.cleanup()
    if problems:
        warnings.warn("; ".join(problems), stacklevel=1)


@pytest.fixture(params=RUNTIME_NAMES)
def runtime(request: pytest.FixtureRequest, tmp_path: Path, make_bundle: BundleFactory) -> Iterator[Runtime]:
    """The runtime under test. (Depends on make_bundle so that it is torn down first: containers are
    deleted before their cgroups are removed.)"""
    rt = _make_runtime(str(request.param), tmp_path)
    yield rt
    _finish(rt)


@pytest.fixture
def reference(runtime: Runtime, tmp_path: Path, make_bundle: BundleFactory) -> Iterator[Runtime | None]:
    """runc, to compare the runtime under test with; None when the runtime under test is runc."""
    if runtime.name == "runc":
        yield None
        return
    binary = runtime_binary("runc")
    if binary is None:
        warnings.warn("runc not found: berth results are checked without a runc comparison", stacklevel=1)
        yield None
        return
    rt = Runtime("runc", binary, tmp_path / "rt-runc-reference")
    yield rt
    _finish(rt)


@pytest.fixture
def berth(tmp_path: Path, make_bundle: BundleFactory) -> Iterator[Runtime]:
    """berth-runtime (or the runtime named by $BERTH_TEST_RUNTIME, to validate a test against runc)."""
    name = os.environ.get("BERTH_TEST_RUNTIME", "berth")
    rt = _make_runtime(name, tmp_path)
    yield rt
    _finish(rt)
