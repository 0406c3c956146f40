"""The container service: create, list, inspect, rename and remove containers.

``create`` resolves the image, builds the container's root filesystem (an overlay over the image's
layers) and its OCI bundle (``<root>/<id>/bundle/config.json``, made by ``oci_spec``), and records it
as ``created``. A failed create leaves nothing: no record, no mount, no directory.

A container runs under its own monitor process (``backend.engine.runtime.monitor``), spawned at
``start``: the monitor creates and starts it through the OCI runtime, keeps its stdio and json-file log,
and records its exit, so containers outlive berthd. ``stop`` sends the stop signal, waits, then SIGKILL;
``wait`` and ``logs`` read from the monitor or, once it is gone, from the files it left.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from backend.engine.containers.console import Console, ConsoleSocket
from backend.engine.containers.create_request import CreateRequest, parse_create_request, validate_signal
from backend.engine.containers.health import HealthChecks, ProbeTarget, health_config
from backend.engine.containers.mounts import ContainerMounts
from backend.engine.containers.oci_spec import build_oci_spec, default_init_binary, effective_config, resolve_user
from backend.engine.containers.restart import (
    next_delay,
    restarts_at_engine_start,
    restarts_on_exit,
    seconds_between,
)
from backend.engine.containers.state import ZERO_TIME, ContainerStatus, Health, HealthStatus, now
from backend.engine.containers.stats import sample, stats_document
from backend.engine.containers.store import ContainerRecord, ContainerStore, new_id
from backend.engine.errors import Conflict, EngineError, InvalidParameter, NotFound, Unavailable
from backend.engine.events import EventBus
from backend.engine.images.changes import apply_changes
from backend.engine.images.commit import CONFIG_KEYS, commit_reference, container_config, merge_config
from backend.engine.images.image_store import ImageRecord
from backend.engine.images.layer_store import chain_ids
from backend.engine.images.overlay import mount_rootfs, unmount_rootfs
from backend.engine.images.service import ImageService
from backend.engine.networks.service import NetworkService
from backend.engine.runtime.cgroups import open_cgroup, parse_resources
from backend.engine.runtime.forkserver_client import IdleForkServer
from backend.engine.runtime.logfile import LogEntry, read_logs
from backend.engine.runtime.monitor import LOG_NAME, write_json_atomic
from backend.engine.runtime.monitor_client import MonitorHandle, MonitorState
from backend.engine.system import ContainerCounts
from backend.engine.volumes.service import VolumeService, tree_size

DEFAULT_CGROUP_PARENT = "/berth"


@dataclass
class ExecInstance:
    """A process registered with ``exec_create`` (kept in memory, as dockerd keeps them)."""

    id: str
    container_id: str
    cmd: list[str]
    env: list[str]
    user: str
    workdir: str
    tty: bool
    open_stdin: bool
    started: bool = False
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    waiter: asyncio.Future[None] | None = None
    console: Console | None = None


@dataclass
class ExecStreams:
    """An exec'd process's streams: with a tty one ``stdout`` (the pty) and no ``stderr``; ``stdin`` is
    None when the runtime failed before the process ran (``stdout`` then holds its message)."""

    stdout: asyncio.StreamReader
    stderr: asyncio.StreamReader | None
    stdin: asyncio.StreamWriter | None
    console: Console | None = None


UPDATABLE = ("BlkioWeight", "CpuShares", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime",
             "CpusetCpus", "CpusetMems", "Memory", "MemoryReservation", "MemorySwap", "NanoCpus", "PidsLimit",
             "RestartPolicy")
"""The HostConfig fields ``docker update`` may change (others in the body are ignored, as by dockerd)."""

UNIX_EPOCH = "1970-01-01T00:00:00Z"


async def _drain(reader: asyncio.StreamReader) -> None:
    while await reader.read(1 << 16):
        pass


MAX_EXECS = 1000
"""Exec instances kept before finished ones are dropped (dockerd keeps them until the container goes)."""


class ContainerService:
    """Containers under ``root`` (``<data-root>/containers``)."""

    def __init__(self, root: str, images: ImageService, events: EventBus, *, runtime: str,
                 runtime_root: str, cgroup_parent: str = DEFAULT_CGROUP_PARENT,
                 init_binary: str | None = None, volumes: VolumeService | None = None,
                 networks: NetworkService | None = None, runtimes: Mapping[str, str] | None = None) -> None:
        """``runtime`` is the default OCI runtime (a path); ``runtimes`` more, by name (dockerd's
        ``--add-runtime``), chosen per container with ``HostConfig.Runtime``. Each named runtime keeps its
        state in its own root beside ``runtime_root``."""
        self.store = ContainerStore(root)
        self.mounts = ContainerMounts(self.store, volumes)
        self.images = images
        self.events = events
        self.runtime = runtime
        self.runtime_root = runtime_root
        self.default_runtime = os.path.basename(runtime)
        self.runtimes = {self.default_runtime: runtime, **(runtimes or {})}
        self.cgroup_parent = "/" + cgroup_parent.strip("/")
        self.init_binary = init_binary
        self.networks = networks
        # berth-runtime runs warm: monitors are forked from a fork server and run its verbs in-process.
        berth = next((path for path in self.runtimes.values() if os.path.basename(path) == "berth-runtime"), None)
        self._fork_server = IdleForkServer(os.path.join(runtime_root, "forkserver")) if berth else None
        self._lock = asyncio.Lock()
        self._exits: dict[str, asyncio.Event] = {}
        self._watchers: dict[str, asyncio.Future[None]] = {}
        self._execs: dict[str, ExecInstance] = {}
        self._restarts: dict[str, asyncio.Future[None]] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._health = HealthChecks()
        self._closing = False

    def recover(self) -> None:
        self.store.recover()

    def in_use(self) -> Callable[[str], bool]:
        """A predicate for the image service: is this image ID used by any container?"""
        return lambda image_id: any(r.image_id == image_id for r in self.store)

    def filesystem(self, ref: str) -> tuple[ContainerRecord, str, str]:
        """(record, merged dir, upper dir) of a container's root filesystem, mounted from create until
        remove. Raises NotFound."""
        record = self.store.get(ref)
        fs = self._paths(record.id)["fs"]
        return record, os.path.join(fs, "merged"), os.path.join(fs, "upper")

    def _paths(self, container_id: str) -> dict[str, str]:
        base = self.store.dir(container_id)
        return {"base": base, "fs": os.path.join(base, "fs"), "bundle": os.path.join(base, "bundle"),
                "monitor": os.path.join(base, "monitor")}

    async def create(self, body: object, name: str | None = None) -> tuple[str, list[str]]:
        """``POST /containers/create``. Returns (ID, warnings).

        Raises InvalidParameter (bad request or image config), NotFound ("No such image"), Conflict
        (name in use).
        """
        req: CreateRequest = parse_create_request(body, name)
        runtime = (body.get("HostConfig") or {}).get("Runtime") if isinstance(body, dict) else None
        if runtime is not None and (not isinstance(runtime, str) or (runtime and runtime not in self.runtimes)):
            raise InvalidParameter(f"Unknown runtime specified {runtime}")
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
                mounts = await self.mounts.prepare(cid, req, config, merged)
                network = None
                if self.networks is not None:
                    image_ports = (config.get("config") or {}).get("ExposedPorts") or {}
                    exposed = sorted({*req.networking.exposed, *image_ports})
                    network = self.networks.register(cid, replace(req.networking, exposed=exposed), paths["base"])
                spec = build_oci_spec(req, config, merged, container_id=cid, cgroups_path=f"{self.cgroup_parent}/{cid}",
                                      init_binary=self.init_binary or default_init_binary(), mounts=mounts,
                                      network=network)
                with open(os.path.join(paths["bundle"], "config.json"), "w") as f:
                    json.dump(spec, f)
                process: dict[str, Any] = spec["process"]
                request = dict(body) if isinstance(body, dict) else {}
                image_labels = (config.get("config") or {}).get("Labels") or {}
                if image_labels:  # a container carries its image's labels under its own, as with dockerd
                    request["Labels"] = dict(image_labels) | dict(request.get("Labels") or {})
                record = ContainerRecord(id=cid, name=container_name, created=now(), image=req.image,
                                         image_id=image.id, request=request,
                                         args=list(process["args"])[2 if req.init else 0:])
                await self._spawn(record)  # created in the runtime now, so attach works before start
                self.store.save(record)
            except BaseException:
                if mounted:
                    unmount_rootfs(paths["fs"])
                self.mounts.release(cid, remove_anonymous=True)
                if self.networks is not None:
                    await self.networks.forget(cid)
                self.store.remove(cid)
                raise
        self.events.emit("container", "create", cid, {"name": container_name, "image": req.image})
        return cid, []

    def list_containers(self, include_all: bool = False) -> list[ContainerRecord]:
        """Newest first; only running (paused, restarting) ones unless ``include_all``."""
        records = [r for r in self.store if include_all or r.state.status in (
            ContainerStatus.RUNNING, ContainerStatus.PAUSED, ContainerStatus.RESTARTING)]
        return sorted(records, key=lambda r: r.created, reverse=True)

    def counts(self) -> ContainerCounts:
        """Containers by state, for ``docker info``."""
        statuses = [r.state.status for r in self.store]
        running = sum(s in (ContainerStatus.RUNNING, ContainerStatus.RESTARTING) for s in statuses)
        paused = statuses.count(ContainerStatus.PAUSED)
        return ContainerCounts(total=len(statuses), running=running, paused=paused,
                               stopped=len(statuses) - running - paused)

    async def size_rw(self, record: ContainerRecord) -> int:
        """Bytes the container wrote (its overlay upper directory), counted without following links."""
        return await asyncio.to_thread(tree_size, os.path.join(self._paths(record.id)["fs"], "upper"))

    def inspect(self, ref: str) -> dict[str, Any]:
        """Docker's ``ContainerInspect`` document (the fields known before networking and volumes)."""
        record = self.store.get(ref)
        request = record.request
        return {
            "Id": record.id, "Created": record.created, "Path": record.args[0] if record.args else "",
            "Args": record.args[1:], "State": record.state.to_docker(), "Image": record.image_id,
            "Name": "/" + record.name, "RestartCount": record.state.restart_count, "Driver": "overlay2",
            "Platform": "linux",
            "HostConfig": (request.get("HostConfig") or {}) | {"LogConfig": {"Type": "json-file", "Config": {}}},
            "Config": effective_config(request, self._image_config(record), record.id) | {"Image": record.image},
            "GraphDriver": {"Name": "overlay2", "Data": {
                "MergedDir": os.path.join(self._paths(record.id)["fs"], "merged"),
                "UpperDir": os.path.join(self._paths(record.id)["fs"], "upper"),
                "WorkDir": os.path.join(self._paths(record.id)["fs"], "work")}},
            "Mounts": self.mounts.inspect(record.id),
            "NetworkSettings": self.networks.settings(record.id) if self.networks else {"Networks": {}, "Ports": {}},
        }

    def _image_config(self, record: ContainerRecord) -> dict[str, Any]:
        """The container's image config, or {} once the image is gone (``rmi -f``)."""
        try:
            return self.images.config(self.images.resolve(record.image_id))
        except (NotFound, InvalidParameter):
            return {}

    async def update(self, ref: str, body: object) -> list[str]:
        """``docker update``: new resource limits (applied to the cgroup at once when it exists, and kept
        for later starts) and restart policy. Raises InvalidParameter for a bad body (the same checks as
        create), Conflict for a container being removed."""
        if not isinstance(body, dict):
            raise InvalidParameter("update config must be an object")
        async with self._lock:
            record = self.store.get(ref)
            if record.state.status in (ContainerStatus.REMOVING, ContainerStatus.DEAD):
                raise Conflict(f"Cannot update container {record.id}: it is {record.state.status.value}")
            request = copy.deepcopy(record.request) or {"Image": record.image}
            host = request.setdefault("HostConfig", {})
            if not isinstance(host, dict):
                raise InvalidParameter("HostConfig: expected an object")
            changes = {k: v for k, v in body.items() if k in UPDATABLE and v is not None}
            if "Memory" in changes and "MemorySwap" not in changes and host.get("MemorySwap", 0) not in (0, -1):
                host.pop("MemorySwap")  # the old swap limit may now be below memory: back to the default
            host.update(changes)
            req = parse_create_request(request, None)
            if req.auto_remove and req.restart_policy.name != "no":
                raise InvalidParameter("Restart policy cannot be updated because AutoRemove is enabled for the "
                                       "container")
            image = self.images.resolve(record.image_id)
            merged = os.path.join(self._paths(record.id)["fs"], "merged")
            spec = build_oci_spec(req, self.images.config(image), merged, container_id=record.id,
                                  cgroups_path=f"{self.cgroup_parent}/{record.id}",
                                  init_binary=self.init_binary or default_init_binary())
            resources = {k: v for k, v in spec["linux"]["resources"].items() if k != "devices"}
            cgroup = open_cgroup(f"{self.cgroup_parent}/{record.id}", record.id)
            if cgroup.exists():
                await asyncio.to_thread(cgroup.create, parse_resources(resources))
            bundle_config = os.path.join(self._paths(record.id)["bundle"], "config.json")
            with open(bundle_config) as f:
                config = json.load(f)
            config["linux"]["resources"] = {**config["linux"].get("resources", {}), **resources}
            write_json_atomic(bundle_config, config, durable=True)
            record.request = request
            self.store.save(record)
        self.events.emit("container", "update", record.id, {"name": record.name})
        return []

    async def prune(self, *, until: float | None = None, labels: Sequence[str] = (),
                    not_labels: Sequence[str] = ()) -> tuple[list[str], int]:
        """``docker container prune``: remove every stopped (created, exited, dead) container created before
        ``until`` (Unix seconds) carrying all ``labels`` and none of ``not_labels``. Returns (IDs, bytes
        reclaimed)."""
        deleted: list[str] = []
        reclaimed = 0
        for record in list(self.store):
            if record.state.status not in (ContainerStatus.CREATED, ContainerStatus.EXITED, ContainerStatus.DEAD):
                continue
            if until is not None and seconds_between(UNIX_EPOCH, record.created) >= until:
                continue
            if not all(record.has_label(w) for w in labels) or any(record.has_label(w) for w in not_labels):
                continue
            size = await self.size_rw(record)
            with contextlib.suppress(NotFound, Conflict):
                await self.remove(record.id)
                deleted.append(record.id)
                reclaimed += size
        self.events.emit("container", "prune", "", {"reclaimed": str(reclaimed)})
        return deleted, reclaimed

    async def rename(self, ref: str, new_name: str) -> None:
        async with self._lock:
            record = self.store.get(ref)
            old = record.name
            self.store.rename(record, new_name)
        self.events.emit("container", "rename", record.id, {"name": record.name, "oldName": "/" + old})

    async def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        """``docker rm``: remove a stopped container, or with ``force`` kill a running one first; with
        ``volumes`` also its anonymous volumes. Raises Conflict for a running container without ``force``."""
        if force:
            record = self.store.get(ref)
            if record.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
                await self._stop(record, signal.SIGKILL, 10)
        async with self._lock:
            record = self.store.get(ref)
            if force and record.state.status is ContainerStatus.RESTARTING:
                self._cancel_restart(record)
            if record.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED,
                                       ContainerStatus.RESTARTING):
                raise Conflict(f"You cannot remove a {record.state.status.value} container {record.id}. "
                               "Stop the container before attempting removal or force remove")
            if record.corrupt is None:
                record.state.move(ContainerStatus.REMOVING)
            monitor = self._monitor(record)
            if monitor is not None and monitor.alive():  # a created container waits in its monitor
                with contextlib.suppress(Exception):
                    pid = (await monitor.status()).pid
                    if pid:
                        os.kill(pid, signal.SIGKILL)
                    await monitor.wait()
            else:
                await self._delete_orphan(record)
            await asyncio.to_thread(unmount_rootfs, self._paths(record.id)["fs"])
            if self.networks is not None:
                await self.networks.forget(record.id)
            self.mounts.release(record.id, remove_anonymous=volumes)
            self.store.remove(record.id)
        self._forget_execs(record.id)
        self.events.emit("container", "destroy", record.id, {"name": record.name, "image": record.image})

    async def _delete_orphan(self, record: ContainerRecord) -> None:
        """Kill and delete what the runtime still holds of ``record`` when its monitor is gone (killed): the
        monitor deletes the runtime's container when it exits, so a runtime state left means nobody else
        will reap its processes, cgroup and state. Runtime failures are ignored (it may be gone already)."""
        with contextlib.suppress(Unavailable):
            if os.path.exists(os.path.join(self._runtime_of(record)[1], record.id)):
                await self._runtime(record, "delete", "--force")

    # -- running -----------------------------------------------------------------------------------

    def _monitor(self, record: ContainerRecord) -> MonitorHandle | None:
        with contextlib.suppress(Exception):
            return MonitorHandle.connect(self._paths(record.id)["monitor"])
        return None

    async def _spawn(self, record: ContainerRecord) -> MonitorHandle:
        """A monitor that has created the container in the runtime (waiting for start)."""
        request = parse_create_request(record.request or {"Image": record.image}, None)
        paths = self._paths(record.id)
        previous = self._monitor(record)
        if previous is not None:  # the last run's monitor exits right after recording the exit
            for _ in range(250):
                if not previous.alive():
                    break
                await asyncio.sleep(0.02)
        if self.networks is not None:  # namespace, links and ports in place before the runtime creates it
            await self.networks.attach(record.id)
        runtime, runtime_root = self._runtime_of(record)
        fork_server = self._fork_server if os.path.basename(runtime) == "berth-runtime" else None
        try:
            monitor = await asyncio.to_thread(
                MonitorHandle.spawn, paths["monitor"], record.id, paths["bundle"], runtime,
                runtime_root=runtime_root, tty=request.tty, stdin=request.open_stdin,
                stdin_once=request.stdin_once, fork_server=fork_server.get() if fork_server else None)
        except BaseException:
            if self.networks is not None:
                await self.networks.detach(record.id)
            raise
        if fork_server is not None:
            asyncio.get_running_loop().call_later(
                fork_server.idle_timeout + 1, lambda: self._in_background(asyncio.to_thread(fork_server.stop_if_idle)))
        return monitor

    async def _prepared(self, record: ContainerRecord) -> MonitorHandle:
        """The monitor holding the created (not yet started) container, spawning one if needed."""
        monitor = self._monitor(record)
        if monitor is not None and monitor.alive() and (await monitor.status()).state is MonitorState.CREATED:
            return monitor
        return await self._spawn(record)

    async def start(self, ref: str) -> None:
        """``docker start``. Starting a running container is not an error. Raises Unavailable with the
        runtime's message if it cannot start."""
        async with self._lock:
            record = self.store.get(ref)
            if record.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
                return
            self._cancel_restart(record)
            record.state.manually_stopped = False
            record.state.restart_count = 0
            record.state.restart_delay = 0.0
            await self._run(record)
        self.events.emit("container", "start", record.id, {"name": record.name, "image": record.image})

    async def _run(self, record: ContainerRecord) -> None:
        """Start ``record``'s process under its monitor and watch for its exit (call with the lock held)."""
        monitor = await self._prepared(record)
        status = await monitor.start()
        record.state.started(status.pid)
        self._check_health(record, fresh=True)
        self.store.save(record)
        self._watch(record, monitor)

    def _check_health(self, record: ContainerRecord, *, fresh: bool) -> None:
        """Run the probe loop of a container with a health check (see ``health``). ``fresh`` (a start): its
        Health starts again as ``starting`` with no failing streak, keeping the log, as dockerd's does. The
        caller saves the record."""
        config = health_config(record.request, self._image_config(record))
        if config is None:
            return
        if fresh or record.state.health is None:
            record.state.health = Health(log=record.state.health.log if record.state.health else [])
        health = record.state.health
        runtime, runtime_root = self._runtime_of(record)
        pid_file = os.path.join(self._paths(record.id)["base"], "health.pid")
        target = ProbeTarget(runtime, runtime_root, record.id, pid_file)

        def recorded(changed: bool) -> None:
            self.store.save(record)
            if changed:
                self.events.emit("container", f"health_status: {health.status.value}", record.id,
                                 {"name": record.name, "image": record.image})

        self._health.run(record.id, config, health, record.state.started_at, target, recorded)

    def _stop_health(self, record: ContainerRecord) -> None:
        """No more probes (it stopped or paused); its health reads ``unhealthy`` until a probe passes, as
        dockerd's does. The caller saves the record."""
        self._health.stop(record.id)
        if record.state.health is not None:
            record.state.health.status = HealthStatus.UNHEALTHY

    def _watch(self, record: ContainerRecord, monitor: MonitorHandle) -> None:
        """Record the exit when it comes. A ``wait`` registered before this start (``docker run`` asks
        for ``next-exit`` before it starts) keeps its event."""
        exited = self._exits.get(record.id)
        if exited is None or exited.is_set():
            self._exits[record.id] = asyncio.Event()
        self._watchers[record.id] = asyncio.ensure_future(self._on_exit(record, monitor))

    async def _on_exit(self, record: ContainerRecord, monitor: MonitorHandle) -> None:
        """Record the exit when it comes (also while no client waits), then remove an AutoRemove container."""
        try:
            status = await monitor.wait()
        except Exception as exc:  # the monitor died without recording: say so, do not guess a code
            async with self._lock:
                self._stop_health(record)
                record.state.error = f"monitor lost: {exc}"
                record.state.exited(-1)
                self.store.save(record)
            if self.networks is not None:
                await self.networks.detach(record.id)
            self._exits[record.id].set()
            return
        async with self._lock:
            if record.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
                self._stop_health(record)
                record.state.exited(status.exit_code or 0, status.oom_killed, status.finished_at)
                self.store.save(record)
        if self.networks is not None:  # released before stop returns: its ports are free then
            await self.networks.detach(record.id)
        if status.oom_killed:
            self.events.emit("container", "oom", record.id, {"name": record.name})
        self.events.emit("container", "die", record.id,
                         {"name": record.name, "exitCode": str(record.state.exit_code)})
        self._exits[record.id].set()
        if (record.request.get("HostConfig") or {}).get("AutoRemove"):
            with contextlib.suppress(Exception):
                await self.remove(record.id, volumes=True)
            return
        await self._apply_restart_policy(record)

    # -- restart policies (see backend.engine.containers.restart) -----------------------------------

    def _policy_restarts(self, record: ContainerRecord) -> bool:
        policy = parse_create_request(record.request or {"Image": record.image}, None).restart_policy
        return restarts_on_exit(policy, record.state.exit_code, record.state.restart_count,
                                record.state.manually_stopped)

    async def _apply_restart_policy(self, record: ContainerRecord) -> None:
        """After an exit: move to ``restarting`` and restart after Docker's backoff, if the policy says so."""
        async with self._lock:
            if (self._closing or record.id not in self.store.records
                    or record.state.status is not ContainerStatus.EXITED or not self._policy_restarts(record)):
                return
            ran_for = seconds_between(record.state.started_at, record.state.finished_at)
            record.state.restart_delay = next_delay(record.state.restart_delay, ran_for)
            record.state.restart_count += 1
            record.state.move(ContainerStatus.RESTARTING)
            self.store.save(record)
        self._restart_later(record)

    def _restart_later(self, record: ContainerRecord) -> None:
        self._restarts[record.id] = asyncio.ensure_future(self._restart_after_delay(record))

    def _cancel_restart(self, record: ContainerRecord) -> None:
        """Drop a pending policy restart; a ``restarting`` container becomes ``exited`` (lock held)."""
        pending = self._restarts.pop(record.id, None)
        if pending is not None:
            pending.cancel()
        if record.state.status is ContainerStatus.RESTARTING:
            record.state.move(ContainerStatus.EXITED)
            self.store.save(record)

    async def _restart_after_delay(self, record: ContainerRecord) -> None:
        await asyncio.sleep(record.state.restart_delay)
        async with self._lock:
            self._restarts.pop(record.id, None)
            if record.id not in self.store.records or record.state.status is not ContainerStatus.RESTARTING:
                return
            if record.state.manually_stopped:  # stopped by the user while this waited for the lock
                self._cancel_restart(record)
                return
            try:
                await self._run(record)
            except Exception as exc:  # Docker records the error and applies the policy again
                record.state.error = str(exc)
                record.state.exited(128)
                self.store.save(record)
                failed = True
            else:
                failed = False
        if failed:
            await self._apply_restart_policy(record)
        else:
            self.events.emit("container", "start", record.id, {"name": record.name, "image": record.image})

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Stop watching (berthd is shutting down): containers keep running under their monitors, pending
        restarts stay ``restarting`` on disk and are resumed by the next ``recover_running``."""
        self._closing = True
        tasks = [*self._restarts.values(), *self._watchers.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._health.close()
        if self._fork_server is not None:
            await asyncio.to_thread(self._fork_server.close)

    async def recover_running(self) -> None:
        """Live restore (at start-up, before serving): the networks of running containers are adopted
        again (ports served, resolvers up) before this returns; their monitors are watched again. One that
        exited while berthd was down is recorded with the code its monitor wrote; one whose monitor vanished
        without a record is marked exited (-1) with an error. Restart policies are applied after."""
        if self.networks is not None:
            live = {r.id for r in self.store if r.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED)
                    and self._monitor(r) is not None}
            await self.networks.recover(live)
        for record in self.store:
            status = record.state.status
            if status is ContainerStatus.RESTARTING:
                self._restart_later(record)
            elif status is ContainerStatus.EXITED and record.state.started_at != ZERO_TIME:
                policy = parse_create_request(record.request or {"Image": record.image}, None).restart_policy
                if restarts_at_engine_start(policy, record.state.manually_stopped):
                    self._in_background(self.start(record.id))
            elif status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
                monitor = self._monitor(record)
                if monitor is not None:
                    status = self._reconcile_frozen(record)
                    self._watch(record, monitor)
                    if status is ContainerStatus.RUNNING:
                        self._check_health(record, fresh=False)
                else:
                    record.state.error = "the container's monitor is gone"
                    record.state.exited(-1)
                    self.store.save(record)
                    self._in_background(self._apply_restart_policy(record))

    def _reconcile_frozen(self, record: ContainerRecord) -> ContainerStatus:
        """Running or paused as its cgroup's freezer says (berthd may have died between a pause or resume and
        saving the record, a commit's pause included); the record is saved when it changes. Returns the
        status."""
        with contextlib.suppress(EngineError, OSError):
            frozen = open_cgroup(f"{self.cgroup_parent}/{record.id}", record.id).is_frozen()
            actual = ContainerStatus.PAUSED if frozen else ContainerStatus.RUNNING
            if actual is not record.state.status:
                record.state.move(actual)
                self.store.save(record)
        return record.state.status

    async def wait(self, ref: str, condition: str = "not-running") -> int:
        """``docker wait``: the exit code once the container is not running (``not-running``), after its
        next exit (``next-exit``) or once it is removed (``removed``). Raises InvalidParameter for another
        condition."""
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidParameter(f"invalid condition: {condition}")
        record = self.store.get(ref)
        running = record.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED)
        if running or condition == "next-exit":
            if record.id not in self._exits:
                self._exits[record.id] = asyncio.Event()
            await self._exits[record.id].wait()
        if condition == "removed":
            while record.id in self.store.records:
                await asyncio.sleep(0.02)
        return record.state.exit_code

    async def attach(self, ref: str, *, stdin: bool, stdout: bool, stderr: bool
                     ) -> tuple[bool, asyncio.StreamReader, asyncio.StreamWriter]:
        """Attach to the container's streams from now on: (tty, reader of Docker-framed or raw output,
        writer to its stdin). Works before ``start`` (the monitor exists from create). Raises Conflict
        for an exited container."""
        record = self.store.get(ref)
        async with self._lock:
            if record.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
                monitor = self._monitor(record)
            else:
                monitor = await self._prepared(record)
        if monitor is None:
            raise Conflict(f"container {record.id} is not running")
        reader, writer = await monitor.attach(stdin, stdout=stdout, stderr=stderr)
        return monitor.tty, reader, writer

    async def resize(self, ref: str, height: int, width: int) -> None:
        record = self.store.get(ref)
        monitor = self._monitor(record)
        if monitor is None:
            raise Conflict(f"container {record.id} is not running")
        await monitor.resize(height, width)

    async def kill(self, ref: str, sig: str = "KILL") -> None:
        """``docker kill``. Raises InvalidParameter for a bad signal, Conflict if it is not running."""
        number = validate_signal(sig)
        record = self.store.get(ref)
        if record.state.status is not ContainerStatus.RUNNING or not record.state.pid:
            raise Conflict(f"Container {record.id} is not running")
        try:
            os.kill(record.state.pid, number)
        except ProcessLookupError as exc:
            raise Conflict(f"Container {record.id} is not running") from exc
        self.events.emit("container", "kill", record.id, {"name": record.name, "signal": str(number)})

    async def stop(self, ref: str, timeout: int | None = None) -> None:
        """``docker stop``: the stop signal, then SIGKILL after ``timeout`` seconds (default 10). The stop
        finishes even if the caller goes away. Stopping a stopped container is not an error."""
        record = self.store.get(ref)
        record.state.manually_stopped = True  # seen by a policy restart about to happen: it will not
        async with self._lock:  # a restart under way finishes first; a pending one is dropped
            self._cancel_restart(record)
            self.store.save(record)
        if record.state.status not in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
            return
        request = parse_create_request(record.request or {"Image": record.image}, None)
        grace = timeout if timeout is not None else (request.stop_timeout if request.stop_timeout is not None
                                                     else 10)
        await asyncio.shield(self._stop(record, validate_signal(request.stop_signal or "SIGTERM"), grace))

    async def _stop(self, record: ContainerRecord, sig: int, grace: int) -> None:
        if record.state.status is ContainerStatus.PAUSED:  # a frozen process cannot act on a signal
            await self.unpause(record.id)
        exited = self._exits.setdefault(record.id, asyncio.Event())
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.state.pid, sig)
        try:
            await asyncio.wait_for(exited.wait(), max(grace, 0))
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.state.pid, signal.SIGKILL)
            await exited.wait()
        self.events.emit("container", "stop", record.id, {"name": record.name})

    def _runtime_of(self, record: ContainerRecord) -> tuple[str, str]:
        """(runtime path, its state root) of a container: ``HostConfig.Runtime`` or the default."""
        name = str((record.request.get("HostConfig") or {}).get("Runtime") or self.default_runtime)
        if name not in self.runtimes:
            raise Unavailable(f"the runtime {name!r} of container {record.id} is not configured")
        if name == self.default_runtime:
            return self.runtimes[name], self.runtime_root
        return self.runtimes[name], os.path.join(os.path.dirname(self.runtime_root), f"runtime-{name}")

    async def _runtime(self, record: ContainerRecord, *args: str) -> None:
        runtime, root = self._runtime_of(record)
        proc = await asyncio.create_subprocess_exec(runtime, "--root", root, *args, record.id,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise Unavailable(err.decode(errors="replace").strip().splitlines()[-1] if err.strip()
                              else f"{args[0]} failed")

    async def pause(self, ref: str) -> None:
        """``docker pause``: freeze every process. Raises Conflict unless running."""
        await self._set_frozen(ref, True)

    async def unpause(self, ref: str) -> None:
        """``docker unpause``. Raises Conflict unless paused."""
        await self._set_frozen(ref, False)

    async def _set_frozen(self, ref: str, frozen: bool) -> None:
        before, after = ((ContainerStatus.RUNNING, ContainerStatus.PAUSED) if frozen
                         else (ContainerStatus.PAUSED, ContainerStatus.RUNNING))
        async with self._lock:
            record = self.store.get(ref)
            if record.state.status is not before:
                raise Conflict(f"Container {record.id} is not {'running' if frozen else 'paused'}")
            await self._runtime(record, "pause" if frozen else "resume")
            record.state.move(after)
            if frozen:
                self._stop_health(record)
            else:
                self._check_health(record, fresh=False)
            self.store.save(record)
        self.events.emit("container", "pause" if frozen else "unpause", record.id, {"name": record.name})

    async def restart(self, ref: str, timeout: int | None = None) -> None:
        """``docker restart``: stop (if running), then start."""
        record = self.store.get(ref)
        if record.state.status is ContainerStatus.PAUSED:
            await self.unpause(ref)
        await self.stop(ref, timeout)
        await self.start(ref)
        self.events.emit("container", "restart", record.id, {"name": record.name})

    async def commit(self, ref: str, *, repo: str = "", tag: str = "", comment: str = "", author: str = "",
                     changes: Sequence[str] = (), pause: bool = True, config: object = None) -> ImageRecord:
        """``docker commit``: a new image from the container's image and its filesystem changes.

        The image's config is ``config`` (a client's container config) or else the container's, with
        ``changes`` (Dockerfile lines) applied and dockerd's merge with the container's config; it is
        tagged ``repo:tag`` when ``repo`` is given. A running container is paused meanwhile when ``pause``.
        Emits the ``commit`` event. Raises NotFound (container), InvalidParameter (bad repo, tag, config or
        change; nothing is done then), Conflict (dead container, or its image is gone), Unavailable.
        """
        record = self.store.get(ref)
        if record.corrupt or record.state.status in (ContainerStatus.DEAD, ContainerStatus.REMOVING):
            raise Conflict(f"You cannot commit container {record.id} which is {record.state.status.value}")
        reference = commit_reference(repo, tag)
        current = effective_config(record.request, self._image_config(record), record.id) | {"Image": record.image}
        current = {k: v for k, v in current.items() if k in CONFIG_KEYS}
        new_config = merge_config(apply_changes(current if config is None else container_config(config),
                                                list(changes)), current)
        try:
            parent = self.images.resolve(record.image_id)
        except NotFound as exc:
            raise Conflict(f"the image of container {record.id} was removed: cannot commit it") from exc
        paused = False
        if pause and record.state.status is ContainerStatus.RUNNING:
            with contextlib.suppress(Conflict):  # it stopped meanwhile: nothing to pause
                await self.pause(record.id)
                paused = True
        try:
            image = await self.images.commit(
                parent, self.filesystem(record.id)[2], config=new_config, created_by=" ".join(current.get("Cmd") or []),
                comment=comment, author=author, container_id=record.id, container=current, reference=reference)
        finally:
            if paused:
                with contextlib.suppress(Conflict):
                    await self.unpause(record.id)
        self.events.emit("container", "commit", record.id, {
            "name": record.name, "comment": comment, "imageID": image.id,
            "imageRef": reference.familiar() if reference else ""})
        return image

    async def logs(self, ref: str, *, follow: bool = False, since: float | None = None,
                   until: float | None = None, tail: int | None = None,
                   timestamps: bool = False) -> AsyncIterator[LogEntry]:
        """``docker logs``: (stream, bytes) messages from the json-file log, following while it runs."""
        record = self.store.get(ref)
        exited = asyncio.Event()
        running = record.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED)
        watcher = None
        if follow and running and record.id in self._exits:
            async def watch() -> None:
                await self._exits[record.id].wait()
                exited.set()
            watcher = asyncio.ensure_future(watch())
        else:
            exited.set()
        path = os.path.join(self._paths(record.id)["monitor"], LOG_NAME)
        try:
            if os.path.exists(path):
                async for entry in read_logs(path, follow=follow, since=since, until=until, tail=tail,
                                             timestamps=timestamps, exited=exited):
                    yield entry
        finally:
            if watcher is not None:
                watcher.cancel()

    async def top(self, ref: str, ps_args: str = "-ef") -> tuple[list[str], list[list[str]]]:
        """``docker top``: ``ps`` run on the host with ``ps_args``, keeping the container's processes.
        Raises Conflict if it is not running, InvalidParameter if ``ps`` rejects the arguments."""
        record = self.store.get(ref)
        if record.state.status not in (ContainerStatus.RUNNING, ContainerStatus.PAUSED):
            raise Conflict(f"Container {record.id} is not running")
        runtime, runtime_root = self._runtime_of(record)
        proc = await asyncio.create_subprocess_exec(
            runtime, "--root", runtime_root, "ps", "--format", "json", record.id,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise Unavailable(err.decode(errors="replace").strip() or "cannot list the container's processes")
        pids = {str(p) for p in json.loads(out or b"[]") or []}
        # The listing is parsed, not shown: no width limit from a COLUMNS the daemon may have inherited.
        ps = await asyncio.create_subprocess_exec("ps", *ps_args.split(), stdout=asyncio.subprocess.PIPE,
                                                  stderr=asyncio.subprocess.PIPE,
                                                  env={k: v for k, v in os.environ.items() if k != "COLUMNS"})
        listing, ps_err = await ps.communicate()
        if ps.returncode != 0:
            raise InvalidParameter(f"ps: {ps_err.decode(errors='replace').strip()}")
        lines = listing.decode(errors="replace").splitlines()
        if not lines:
            return [], []
        titles = lines[0].split()
        if "PID" not in titles:
            raise InvalidParameter(f"Couldn't find PID field in ps output for {ps_args!r}")
        column = titles.index("PID")
        rows = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > column and fields[column] in pids:
                rows.append(fields)
        return titles, rows

    async def stats(self, ref: str, *, stream: bool, interval: float = 1.0) -> AsyncIterator[dict[str, Any]]:
        """``docker stats``: Docker's stats documents from the container's cgroup, one per ``interval``
        while ``stream`` (until the container stops), else one, with ``precpu_stats`` taken ``interval``
        earlier as dockerd does. A container that is not running gives one all-zero document."""
        record = self.store.get(ref)
        cgroup = open_cgroup(f"{self.cgroup_parent}/{record.id}", record.id)
        previous = None
        while True:
            running = record.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED)
            if not running:
                yield stats_document(record.id, record.name, sample(cgroup), None) if previous is None else \
                    stats_document(record.id, record.name, previous, None)
                return
            current = await asyncio.to_thread(sample, cgroup)
            if previous is not None or stream:
                yield stats_document(record.id, record.name, current, previous)
                if not stream:
                    return
            previous = current
            await asyncio.sleep(interval)

    # -- exec --------------------------------------------------------------------------------------

    def exec_create(self, ref: str, body: object) -> str:
        """``POST /containers/{id}/exec``: register a process to run in a running container.
        Raises Conflict if it is not running, InvalidParameter for a bad body."""
        record = self.store.get(ref)
        if record.state.status is not ContainerStatus.RUNNING:
            raise Conflict(f"Container {record.id} is not running")
        if not isinstance(body, dict):
            raise InvalidParameter("exec config must be an object")
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not isinstance(cmd, list) or not cmd or not all(isinstance(c, str) for c in cmd):
            raise InvalidParameter("No exec command specified")
        env = body.get("Env") or []
        if not isinstance(env, list) or not all(isinstance(e, str) and "=" in e for e in env):
            raise InvalidParameter("Env: expected a list of NAME=value strings")
        workdir = body.get("WorkingDir") or ""
        if not isinstance(workdir, str) or (workdir and not workdir.startswith("/")):
            raise InvalidParameter(f"the working directory '{workdir}' is invalid, it needs to be an absolute path")
        user = body.get("User") or ""
        if not isinstance(user, str):
            raise InvalidParameter("User: expected a string")
        if len(self._execs) >= MAX_EXECS:  # a long-lived container exec'd in a loop: keep the memory bounded
            self._forget_execs()
        exec_id = new_id()
        self._execs[exec_id] = ExecInstance(
            id=exec_id, container_id=record.id, cmd=list(cmd), env=list(env), user=user, workdir=workdir,
            tty=bool(body.get("Tty")), open_stdin=bool(body.get("AttachStdin")))
        self.events.emit("container", f"exec_create: {' '.join(cmd)}", record.id, {"name": record.name})
        return exec_id

    def _forget_execs(self, container_id: str | None = None) -> None:
        """Drop finished exec instances: of ``container_id`` (removed), or of every container."""
        for exec_id, instance in list(self._execs.items()):
            if (container_id is None or instance.container_id == container_id) and instance.started \
                    and not instance.running:
                del self._execs[exec_id]

    def exec_get(self, exec_id: str) -> ExecInstance:
        try:
            return self._execs[exec_id]
        except KeyError as exc:
            raise NotFound(f"No such exec instance: {exec_id}") from exc

    async def exec_start(self, exec_id: str, *, detach: bool = False) -> ExecStreams:
        """Start the exec'd process (through the runtime's ``exec``, joining every namespace and the
        cgroup of the container). Without a tty its stdin/stdout/stderr are pipes; with one, the runtime
        hands us the pty master over a console socket, so ``exec_resize`` can size it. ``detach``: nobody
        will read or write; stdin is closed and a terminal's output drained so the process never blocks.
        Raises Conflict if it already ran or the container stopped."""
        instance = self.exec_get(exec_id)
        if instance.started:
            raise Conflict(f"Error: Exec command {exec_id} has already run")
        record = self.store.get(instance.container_id)
        if record.state.status is not ContainerStatus.RUNNING:
            raise Conflict(f"Container {record.id} is not running")
        runtime, runtime_root = self._runtime_of(record)
        argv = [runtime, "--root", runtime_root, "exec"]
        if instance.user:
            merged = os.path.join(self._paths(record.id)["fs"], "merged")
            uid, gid, _ = resolve_user(merged, instance.user)
            argv += ["--user", f"{uid}:{gid}"]
        if instance.workdir:
            argv += ["--cwd", instance.workdir]
        for item in instance.env:
            argv += ["--env", item]
        instance.started = True
        console_socket = None
        if instance.tty:
            os.makedirs(self.runtime_root, mode=0o700, exist_ok=True)
            console_socket = ConsoleSocket(os.path.join(self.runtime_root, f"exec-{exec_id[:16]}.sock"))
            argv += ["--tty", "--console-socket", console_socket.path]
        argv += [record.id, *instance.cmd]
        pipe = asyncio.subprocess.PIPE
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=pipe if console_socket is None else asyncio.subprocess.DEVNULL,
                stdout=pipe if console_socket is None else asyncio.subprocess.DEVNULL, stderr=pipe)
            instance.running = True
            instance.pid = process.pid
            streams = await self._exec_streams(process, console_socket)
        finally:
            if console_socket is not None:
                console_socket.close()
        instance.console = streams.console

        async def reap() -> None:
            instance.exit_code = await process.wait()
            instance.running = False
            self.events.emit("container", "exec_die", record.id,
                             {"name": record.name, "execID": exec_id, "exitCode": str(instance.exit_code)})

        instance.waiter = asyncio.ensure_future(reap())
        self.events.emit("container", f"exec_start: {' '.join(instance.cmd)}", record.id, {"name": record.name})
        if detach:
            if streams.console is not None:
                self._in_background(_drain(streams.stdout))
            elif streams.stdin is not None:
                streams.stdin.close()
        return streams

    @staticmethod
    async def _exec_streams(process: asyncio.subprocess.Process, console_socket: ConsoleSocket | None
                            ) -> ExecStreams:
        assert process.stderr is not None
        if console_socket is None:
            assert process.stdout is not None and process.stdin is not None
            return ExecStreams(process.stdout, process.stderr, process.stdin)
        receiving = asyncio.ensure_future(console_socket.receive())
        exited = asyncio.ensure_future(process.wait())
        await asyncio.wait({receiving, exited}, return_when=asyncio.FIRST_COMPLETED)
        if receiving.done() and receiving.exception() is None:
            exited.cancel()
            console = await Console.open(receiving.result())
            return ExecStreams(console.reader, None, console.writer, console)
        receiving.cancel()  # the runtime failed before it made the terminal: its message is the output
        failure = asyncio.StreamReader()
        failure.feed_data(await process.stderr.read())
        failure.feed_eof()
        return ExecStreams(failure, None, None)

    async def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        """``POST /exec/{id}/resize``. Raises NotFound, Conflict for an exec without a running tty."""
        instance = self.exec_get(exec_id)
        if instance.console is None or not instance.running:
            raise Conflict(f"exec {exec_id} has no running terminal")
        instance.console.resize(height, width)

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        """``GET /exec/{id}/json``."""
        i = self.exec_get(exec_id)
        return {
            "ID": i.id, "Running": i.running, "ExitCode": i.exit_code, "ContainerID": i.container_id,
            "OpenStdin": i.open_stdin, "OpenStdout": True, "OpenStderr": True, "CanRemove": False,
            "DetachKeys": "", "Pid": i.pid,
            "ProcessConfig": {"tty": i.tty, "entrypoint": i.cmd[0], "arguments": i.cmd[1:], "privileged": False,
                              "user": i.user},
        }
