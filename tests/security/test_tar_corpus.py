"""Hostile tars through every door that unpacks one: ``docker load``, ``docker import``, a pull from the
registry, ``docker cp`` into a container and a ``docker build`` context. Every case goes through
``docker load`` and ``docker cp`` (the layer applier and the copy extractor); the representatives of each
class (``CORE``) through the other doors too.

Each case says its expected error per channel (``tar_cases.py``); a tar that is accepted must have kept
everything inside its target, which the shared checks (conftest.py) prove on the host side.
"""

from __future__ import annotations

import functools
import subprocess
import uuid

import pytest
import zstandard

from tests.fixtures.berthd import Berthd
from tests.fixtures.registry import LocalRegistry
from tests.security.hostile import Tar, Upload, clear_error, gz, save_archive
from tests.security.tar_cases import CASES, CORE, TarCase

pytestmark = [pytest.mark.root, pytest.mark.network]


@functools.cache
def _tar(case: TarCase) -> bytes:
    return case.build()


def docker_bytes(daemon: Berthd, *args: str, data: bytes = b"", timeout: float = 120
                 ) -> subprocess.CompletedProcess[str]:
    """The docker CLI against ``daemon`` with ``data`` on stdin; output decoded."""
    result = subprocess.run(["docker", *args], env=daemon.env, input=data, capture_output=True, timeout=timeout)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(errors="replace"),
                                       result.stderr.decode(errors="replace"))


def _outcome(daemon: Berthd, result: subprocess.CompletedProcess[str], expected: str | None,
             image: str | None) -> None:
    if expected is not None:
        clear_error(result, expected)
        if image is not None:
            assert daemon.docker("image", "inspect", image, check=False).returncode != 0, "a refused image exists"
        return
    assert result.returncode == 0, result.stderr
    if image is not None:
        daemon.docker("rmi", image)


def _unique(case: TarCase) -> str:
    return f"sec-{case.id}-{uuid.uuid4().hex[:6]}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_docker_load(berthd_with_busybox: Berthd, case: TarCase) -> None:
    image = f"{_unique(case)}:latest"
    result = docker_bytes(berthd_with_busybox, "load", data=save_archive([_tar(case)], image))
    _outcome(berthd_with_busybox, result, case.expect("layer"), image)


@pytest.mark.parametrize("case", CORE, ids=lambda c: c.id)
def test_docker_import(berthd_with_busybox: Berthd, case: TarCase) -> None:
    image = f"{_unique(case)}:latest"
    result = docker_bytes(berthd_with_busybox, "import", "-", image, data=_tar(case))
    _outcome(berthd_with_busybox, result, case.expect("layer"), image)


@pytest.mark.parametrize("case", CORE, ids=lambda c: c.id)
def test_pull_from_registry(berthd_with_busybox: Berthd, registry: LocalRegistry, case: TarCase) -> None:
    repo = f"hostile/{_unique(case)}"
    Upload(registry.url, repo).image("v1", [_tar(case)])
    image = f"{registry.domain}/{repo}:v1"
    result = docker_bytes(berthd_with_busybox, "pull", "-q", image)
    _outcome(berthd_with_busybox, result, case.expect("layer"), image)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_docker_cp_into_container(berthd_with_busybox: Berthd, case: TarCase) -> None:
    name = _unique(case)
    berthd_with_busybox.docker("create", "--name", name, "busybox", "true")
    try:
        result = docker_bytes(berthd_with_busybox, "cp", "-", f"{name}:/", data=_tar(case))
        _outcome(berthd_with_busybox, result, case.expect("cp"), None)
    finally:
        berthd_with_busybox.docker("rm", "-f", name)


@pytest.mark.parametrize("case", CORE, ids=lambda c: c.id)
def test_build_context(berthd_with_busybox: Berthd, case: TarCase) -> None:
    image = f"{_unique(case)}:latest"
    data = _concat(Tar().file("Dockerfile", b"FROM busybox\nCOPY . /ctx/\n").bytes(), _tar(case))
    env_result = subprocess.run(["docker", "build", "-q", "-t", image, "-"], input=data, capture_output=True,
                                env={**berthd_with_busybox.env, "DOCKER_BUILDKIT": "0"}, timeout=180)
    result = subprocess.CompletedProcess(env_result.args, env_result.returncode, env_result.stdout.decode(),
                                         env_result.stderr.decode(errors="replace"))
    _outcome(berthd_with_busybox, result, case.expect("context"), image)


def _concat(first: bytes, second: bytes) -> bytes:
    """``first``'s entries (end-of-archive blocks stripped) then ``second``'s, in ``second``'s compression
    (gzip members and zstd frames concatenate)."""
    end = len(first)
    while end >= 512 and first[end - 512:end] == b"\0" * 512:
        end -= 512
    if second.startswith(b"\x1f\x8b"):
        return gz(first[:end]) + second
    if second.startswith(b"\x28\xb5\x2f\xfd"):
        return zstandard.ZstdCompressor().compress(first[:end]) + second
    return first[:end] + second
