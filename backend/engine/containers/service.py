"""The container service: create, list, inspect, rename and remove containers.

``create`` resolves the image, builds the container's root filesystem (an overlay over the image's
layers) and its OCI bundle (``<root>/<id>/bundle/config.json``, made by ``oci_spec``), and records it
as ``created``. A failed create leaves nothing: no record, no mount, no directory.

Running containers (start, stop, wait, logs, attach, exec) go through a per-container monitor process
(``backend.engine.runtime.monitor``); that part is being built next and is not wired here yet.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import Any

from backend.engine.containers.create_request import CreateRequest, parse_create_request
from backend.engine.containers.oci_spec import build_oci_spec
from backend.engine.containers.state import ContainerStatus, now
from backend.engine.containers.store import ContainerRecord, ContainerStore, new_id
from backend.engine.errors import Conflict, InvalidParameter
from backend.engine.events import EventBus
from backend.engine.images.layer_store import chain_ids
from backend.engine.images.overlay import mount_rootfs, unmount_rootfs
from backend.engine.images.service import ImageService

CGROUP_PARENT = "/berth"


class ContainerService:
    """Containers under ``root`` (``<data-root>/containers``)."""

    def __init__(self, root: str, images: ImageService, events: EventBus) -> None:
        self.store = ContainerStore(root)
        self.images = images
        self.events = events
        self._lock = asyncio.Lock()

    def recover(self) -> None:
        self.store.recover()

    def in_use(self) -> Callable[[str], bool]:
        """A predicate for the image service: is this image ID used by any container?"""
        return lambda image_id: any(r.image_id == image_id for r in self.store)

    def _paths(self, container_id: str) -> dict[str, str]:
        base = self.store.dir(container_id)
        return {"base": base, "fs": os.path.join(base, "fs"), "bundle": os.path.join(base, "bundle")}

    async def create(self, body: object, name: str | None = None) -> tuple[str, list[str]]:
        """``POST /containers/create``. Returns (ID, warnings).

        Raises InvalidParameter (bad request or image config), NotFound ("No such image"), Conflict
        (name in use).
        """
        req: CreateRequest = parse_create_request(body, name)
        image = self.images.resolve(req.image)
        if image.corrupt:
            raise InvalidParameter(f"image {image.id} is corrupt: {image.corrupt}")
        config = self.images.config(image)
        async with self._lock:
            container_name = self.store.reserve_name(req.name)
            cid = new_id()
            paths = self._paths(cid)
            os.makedirs(paths["bundle"], mode=0o700)
            mounted = False
            try:
                chain = list(reversed(chain_ids(image.diff_ids)))
                merged = await asyncio.to_thread(mount_rootfs, self.images.layers, chain, paths["fs"])
                mounted = True
                spec = build_oci_spec(req, config, merged, container_id=cid, cgroups_path=f"{CGROUP_PARENT}/{cid}")
                with open(os.path.join(paths["bundle"], "config.json"), "w") as f:
                    json.dump(spec, f)
                process: dict[str, Any] = spec["process"]
                record = ContainerRecord(id=cid, name=container_name, created=now(), image=req.image,
                                         image_id=image.id, request=dict(body) if isinstance(body, dict) else {},
                                         args=list(process["args"]))
                self.store.save(record)
            except BaseException:
                if mounted:
                    unmount_rootfs(paths["fs"])
                self.store.remove(cid)
                raise
        self.events.emit("container", "create", cid, {"name": container_name, "image": req.image})
        return cid, []

    def list_containers(self, include_all: bool = False) -> list[ContainerRecord]:
        """Newest first; only running ones unless ``include_all``."""
        records = [r for r in self.store
                   if include_all or r.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED)]
        return sorted(records, key=lambda r: r.created, reverse=True)

    def inspect(self, ref: str) -> dict[str, Any]:
        """Docker's ``ContainerInspect`` document (the fields known before networking and volumes)."""
        record = self.store.get(ref)
        request = record.request
        return {
            "Id": record.id, "Created": record.created, "Path": record.args[0] if record.args else "",
            "Args": record.args[1:], "State": record.state.to_docker(), "Image": record.image_id,
            "Name": "/" + record.name, "RestartCount": record.state.restart_count, "Driver": "overlay2",
            "Platform": "linux", "HostConfig": request.get("HostConfig") or {},
            "Config": {k: v for k, v in request.items() if k not in ("HostConfig", "NetworkingConfig")}
            | {"Image": record.image},
            "GraphDriver": {"Name": "overlay2", "Data": {
                "MergedDir": os.path.join(self._paths(record.id)["fs"], "merged"),
                "UpperDir": os.path.join(self._paths(record.id)["fs"], "upper"),
                "WorkDir": os.path.join(self._paths(record.id)["fs"], "work")}},
            "Mounts": [], "NetworkSettings": {"Networks": {}, "Ports": {}},
        }

    async def rename(self, ref: str, new_name: str) -> None:
        async with self._lock:
            record = self.store.get(ref)
            old = record.name
            self.store.rename(record, new_name)
        self.events.emit("container", "rename", record.id, {"name": record.name, "oldName": "/" + old})

    async def remove(self, ref: str, *, force: bool = False) -> None:
        """``docker rm``: a container that is not running. Raises Conflict for a running one (the
        ``force`` path arrives with the monitor)."""
        async with self._lock:
            record = self.store.get(ref)
            if record.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED,
                                       ContainerStatus.RESTARTING):
                raise Conflict(f"You cannot remove a {record.state.status.value} container {record.id}. "
                               "Stop the container before attempting removal or force remove")
            if record.corrupt is None:
                record.state.move(ContainerStatus.REMOVING)
            await asyncio.to_thread(unmount_rootfs, self._paths(record.id)["fs"])
            self.store.remove(record.id)
        self.events.emit("container", "destroy", record.id, {"name": record.name, "image": record.image})
