"""Container create/list/inspect/rename/remove over a real image, overlay and bundle."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.engine.containers.service import ContainerService
from backend.engine.containers.state import ContainerStatus
from backend.engine.errors import Conflict, InvalidParameter, NotFound
from backend.engine.events import EventBus
from backend.engine.images.service import ImageService
from backend.engine.registry.client import RegistryClient
from tests.fixtures.images import LayoutImage, push_with_skopeo
from tests.fixtures.registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.network]


@pytest.fixture(autouse=True)
def _unmount_leftovers(tmp_path: Path) -> Iterator[None]:
    """Containers outlive their engine by design, and a test may end with some left (created, running):
    kill them (by cgroup) and their monitors (whose working directory is under the test's temp dir), then
    unmount their filesystems so the temp dir can go."""
    yield
    for state in Path("/sys/fs/cgroup/freezer", CGROUP_PARENT).glob("*/freezer.state"):
        with contextlib.suppress(OSError):
            state.write_text("THAWED")
    pids = {int(p) for procs in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}/*/cgroup.procs")
            for p in procs.read_text().split()}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and os.readlink(entry / "cwd").startswith(str(tmp_path)):
                pids.add(int(entry.name))
    for pid in pids - {os.getpid()}:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for point in sorted(_mounts_under(tmp_path), reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


RUNTIME = str(Path(sys.executable).parent / "berth-runtime")


CGROUP_PARENT = f"berth-test-c{os.getpid()}"


@pytest.fixture(scope="module", autouse=True)
def _remove_cgroup_parent() -> Iterator[None]:
    yield
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        with contextlib.suppress(OSError):
            (hierarchy / CGROUP_PARENT).rmdir()


def make_service(tmp: Path, images: ImageService, events: EventBus) -> ContainerService:
    return ContainerService(str(tmp / "containers"), images, events, runtime=RUNTIME,
                            runtime_root=str(tmp / "runtime"), cgroup_parent=CGROUP_PARENT)


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def test_create_inspect_rename_remove(busybox_image: LayoutImage, registry: LocalRegistry, tmp_path: Path) -> None:
    push_with_skopeo(busybox_image, "ctr/bb:latest", registry)
    images = ImageService(str(tmp_path / "image"), RegistryClient())
    events = EventBus()
    service = make_service(tmp_path, images, events)
    image_ref = f"{registry.domain}/ctr/bb"

    async def scenario() -> dict[str, Any]:
        await images.pull(image_ref)
        cid, warnings = await service.create({"Image": image_ref, "Cmd": ["echo", "hi"], "Env": ["A=1"]}, "web")
        assert warnings == []
        with pytest.raises(Conflict, match='The container name "/web" is already in use'):
            await service.create({"Image": image_ref, "Cmd": ["true"]}, "web")
        for bad, error in (({"Image": image_ref, "HostConfig": {"Memory": 1}}, InvalidParameter),
                           ({"Image": "nosuch:image", "Cmd": ["true"]}, NotFound),
                           ({"Image": image_ref, "Cmd": ["true"], "User": "nobody"}, InvalidParameter)):
            with pytest.raises(error):
                await service.create(bad)
        doc = service.inspect("web")
        await service.rename("web", "web2")
        assert service.inspect(cid[:12])["Name"] == "/web2"
        assert service.in_use()(doc["Image"])
        bundle = json.loads((tmp_path / "containers" / cid / "bundle" / "config.json").read_text())
        assert bundle["process"]["args"] == ["echo", "hi"] and "A=1" in bundle["process"]["env"]
        await service.remove("web2")
        with pytest.raises(NotFound):
            service.inspect(cid)
        return doc

    doc = asyncio.run(scenario())
    assert doc["Path"] == "echo" and doc["Args"] == ["hi"] and doc["State"]["Status"] == "created"
    assert doc["Config"]["Image"] == f"{registry.domain}/ctr/bb"
    assert os.listdir(tmp_path / "containers") == [] and _mounts_under(tmp_path) == []
    assert [s.repo_tags for s in images.list_images()] == [[f"{registry.domain}/ctr/bb:latest"]]


def test_store_reloads_and_refuses_removing_a_running_container(busybox_image: LayoutImage,
                                                                 registry: LocalRegistry, tmp_path: Path) -> None:
    push_with_skopeo(busybox_image, "ctr/bb2:latest", registry)
    images = ImageService(str(tmp_path / "image"), RegistryClient())

    async def create() -> str:
        await images.pull(f"{registry.domain}/ctr/bb2")
        service = make_service(tmp_path, images, EventBus())
        cid, _ = await service.create({"Image": f"{registry.domain}/ctr/bb2", "Cmd": ["sleep", "1"]})
        record = service.store.get(cid)
        record.state.started(12345)
        service.store.save(record)
        return cid

    cid = asyncio.run(create())
    reloaded = make_service(tmp_path, images, EventBus())
    assert reloaded.store.get(cid).state.status is ContainerStatus.RUNNING

    async def remove() -> None:
        with pytest.raises(Conflict, match="You cannot remove a running container"):
            await reloaded.remove(cid)
        record = reloaded.store.get(cid)
        record.state.exited(0)
        await reloaded.remove(cid)

    asyncio.run(remove())
    assert _mounts_under(tmp_path) == []


def test_start_logs_wait_stop_and_force_remove(busybox_image: LayoutImage, registry: LocalRegistry,
                                               tmp_path: Path) -> None:
    push_with_skopeo(busybox_image, "ctr/run:latest", registry)
    images = ImageService(str(tmp_path / "image"), RegistryClient())
    events = EventBus()
    service = make_service(tmp_path, images, events)
    image_ref = f"{registry.domain}/ctr/run"

    async def scenario() -> None:
        await images.pull(image_ref)
        cid, _ = await service.create({"Image": image_ref, "Cmd": ["sh", "-c", "echo out; echo err >&2; exit 3"]})
        await service.start(cid)
        assert await service.wait(cid) == 3
        doc = service.inspect(cid)
        assert doc["State"]["Status"] == "exited" and doc["State"]["ExitCode"] == 3
        entries = [(stream, bytes(data)) async for stream, data in service.logs(cid)]
        assert sorted(entries) == [("stderr", b"err\n"), ("stdout", b"out\n")]
        await service.start(cid)  # a second start runs it again
        assert await service.wait(cid) == 3
        assert len([e async for e in service.logs(cid)]) == 4

        await service.create({"Image": image_ref, "Cmd": ["sleep", "100"]}, "sleeper")
        await service.start("sleeper")
        assert service.inspect("sleeper")["State"]["Running"]
        with pytest.raises(InvalidParameter, match="Invalid signal: NOPE"):
            await service.kill("sleeper", "NOPE")
        await service.stop("sleeper", timeout=1)  # pid 1 ignores SIGTERM: killed after the grace
        assert service.inspect("sleeper")["State"]["ExitCode"] == 137
        await service.start("sleeper")
        with pytest.raises(Conflict, match="Stop the container before attempting removal or force remove"):
            await service.remove("sleeper")
        await service.remove("sleeper", force=True)
        await service.remove(cid)

    asyncio.run(scenario())
    assert os.listdir(tmp_path / "containers") == [] and _mounts_under(tmp_path) == []
