"""Image archives cross between Berth and a real dockerd (Debian's docker.io) both ways.

Berth pulls the locally built test images from the local registry and ``save``s them; the test dockerd
(tests/fixtures/dockerd.py: its own network namespace, data root and socket) ``docker load``s the tar,
reports the same image ID and runs the image. Then ``docker save`` tars go back into fresh Berth stores,
whose merged root filesystems must hold what the image recipes put there.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backend.engine.images.layer_store import chain_ids
from backend.engine.images.overlay import mount_rootfs, unmount_rootfs
from backend.engine.images.service import ImageService, Progress
from backend.engine.registry.client import RegistryClient
from tests.fixtures.dockerd import LocalDockerd
from tests.fixtures.images import LayoutImage, push_with_skopeo
from tests.fixtures.registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.network]

IMAGES = ("busybox", "multilayer")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def make_service(root: Path) -> ImageService:
    return ImageService(str(root), RegistryClient())


@dataclass(frozen=True)
class Exported:
    """An image Berth pulled and saved, and dockerd loaded: its reference, ID and diff IDs in Berth."""

    ref: str
    image_id: str
    diff_ids: list[str]


def docker_ok(dockerd: LocalDockerd, *args: str) -> str:
    """Run the docker CLI; assert exit 0 (showing stderr); stdout stripped."""
    proc = dockerd.docker(*args)
    assert proc.returncode == 0, f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
    return str(proc.stdout).strip()


def docker_id(dockerd: LocalDockerd, ref: str) -> str:
    return docker_ok(dockerd, "image", "inspect", "--format", "{{.Id}}", ref)


@pytest.fixture(scope="module")
def exported(
    registry: LocalRegistry,
    busybox_image: LayoutImage,
    multilayer_image: LayoutImage,
    dockerd: LocalDockerd,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Exported]]:
    """Both test images: pushed with skopeo, pulled and saved by Berth, ``docker load``ed into dockerd."""
    work = tmp_path_factory.mktemp("berth-to-docker")
    service = make_service(work / "store")
    layouts = {"busybox": busybox_image, "multilayer": multilayer_image}
    refs = {name: f"{registry.domain}/interop/{name}:latest" for name in layouts}
    for name, layout in layouts.items():
        push_with_skopeo(layout, f"interop/{name}:latest", registry)

    async def pull_all() -> list[Any]:
        # One event loop for every pull: the registry client's connection pool belongs to its loop.
        async with service.registry:
            return [await service.pull(ref) for ref in refs.values()]

    out: dict[str, Exported] = {}
    for (name, ref), record in zip(refs.items(), run(pull_all()), strict=True):
        archive = work / f"{name}.tar"
        with open(archive, "wb") as f:
            service.save([ref], f)
        loaded = docker_ok(dockerd, "load", "-i", str(archive))
        assert f"Loaded image: {ref}" in loaded, loaded
        out[name] = Exported(ref, record.id, list(record.diff_ids))
    yield out
    for e in out.values():
        dockerd.docker("image", "rm", "-f", e.ref)


@pytest.fixture
def mounts() -> Iterator[list[Path]]:
    dirs: list[Path] = []
    yield dirs
    for d in dirs:
        unmount_rootfs(str(d))


def merged(service: ImageService, name: str, where: Path, mounts: list[Path]) -> Path:
    record = service.resolve(name)
    mounts.append(where)
    return Path(mount_rootfs(service.layers, list(reversed(chain_ids(record.diff_ids))), str(where)))


def check_rootfs(name: str, root: Path) -> None:
    """What the recipe of image ``name`` (tests/fixtures/images.py) leaves in the merged view."""
    assert (root / "bin/busybox").is_file()
    assert os.readlink(root / "bin/sh") == "busybox"
    if name == "multilayer":
        assert (root / "etc/motd").read_bytes() == b"layer 4 is zstd-compressed\n"
        assert (root / "etc/hostname").read_bytes() == b"multilayer\n"
        assert not os.path.lexists(root / "etc/removed.txt")
        assert not os.path.lexists(root / "etc/.wh.removed.txt")
        assert sorted(os.listdir(root / "opt/data")) == ["c.txt"]
        assert os.readlink(root / "var/run") == "/run"
        assert (root / "bin/link").read_bytes() == (root / "bin/tool").read_bytes() == b"#!/bin/sh\necho tool\n"
        assert os.stat(root / "bin/link").st_ino == os.stat(root / "bin/tool").st_ino


# -- (1) Berth save -> docker load ------------------------------------------------------------------------


@pytest.mark.parametrize("name", IMAGES)
def test_docker_loads_berth_save_with_the_same_id(name: str, exported: dict[str, Exported],
                                                  dockerd: LocalDockerd) -> None:
    image = exported[name]
    assert docker_id(dockerd, image.ref) == image.image_id
    layers = json.loads(docker_ok(dockerd, "image", "inspect", "--format", "{{json .RootFS.Layers}}", image.ref))
    assert layers == image.diff_ids


def test_docker_runs_busybox_saved_by_berth(exported: dict[str, Exported], dockerd: LocalDockerd) -> None:
    out = docker_ok(dockerd, "run", "--rm", "--network", "none", exported["busybox"].ref, "sh", "-c", "echo hi")
    assert out == "hi"


def test_docker_runs_multilayer_saved_by_berth(exported: dict[str, Exported], dockerd: LocalDockerd) -> None:
    script = (
        "cat /etc/motd; "
        "if [ -e /etc/removed.txt ]; then echo removed.txt-present; else echo removed.txt-absent; fi; "
        "echo opt/data: $(ls -A /opt/data); "
        "/bin/link"
    )
    out = docker_ok(dockerd, "run", "--rm", "--network", "none", exported["multilayer"].ref, "sh", "-c", script)
    assert out.splitlines() == [
        "layer 4 is zstd-compressed",
        "removed.txt-absent",
        "opt/data: c.txt",
        "tool",
    ]


# -- (2) docker save -> Berth load ------------------------------------------------------------------------


@pytest.mark.parametrize("name", IMAGES)
def test_berth_loads_docker_save(name: str, exported: dict[str, Exported], dockerd: LocalDockerd, tmp_path: Path,
                                 mounts: list[Path]) -> None:
    image = exported[name]
    docker_tag = f"docker-made/{name}:saved"
    docker_ok(dockerd, "tag", image.ref, docker_tag)
    try:
        archive = tmp_path / "docker.tar"
        docker_ok(dockerd, "save", "-o", str(archive), docker_tag)
        expected_id = docker_id(dockerd, docker_tag)
    finally:
        dockerd.docker("image", "rm", docker_tag)  # only the tag: the image stays for the other tests

    service = make_service(tmp_path / "store")
    events: list[Progress] = []
    with open(archive, "rb") as f:
        records = run(service.load(f, progress=events.append))
    assert [r.id for r in records] == [expected_id] == [image.image_id]
    assert records[0].diff_ids == image.diff_ids
    assert service.resolve(docker_tag).id == expected_id
    assert service.resolve(f"docker.io/{docker_tag}").id == expected_id
    assert [e.status for e in events] == [f"Loaded image: {docker_tag}"]
    check_rootfs(name, merged(service, docker_tag, tmp_path / "container", mounts))


# -- (3) one docker save tar, two images ------------------------------------------------------------------


def test_berth_loads_two_images_from_one_docker_save(exported: dict[str, Exported], dockerd: LocalDockerd,
                                                     tmp_path: Path, mounts: list[Path]) -> None:
    refs = [exported[n].ref for n in IMAGES]
    archive = tmp_path / "both.tar"
    docker_ok(dockerd, "save", "-o", str(archive), *refs)

    service = make_service(tmp_path / "store")
    with open(archive, "rb") as f:
        records = run(service.load(f))
    assert sorted(r.id for r in records) == sorted(exported[n].image_id for n in IMAGES)
    assert len(service.list_images()) == 2
    for name in IMAGES:
        assert service.resolve(exported[name].ref).id == exported[name].image_id
        check_rootfs(name, merged(service, exported[name].ref, tmp_path / f"container-{name}", mounts))
