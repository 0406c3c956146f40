"""Orchestration: a loaded :class:`~backend.compose.model.Project` turned into Engine API calls.

Everything goes through :class:`backend.api.client.EngineClient`, so it works against any Docker-API
engine (Berth or dockerd). Resources carry Docker Compose's labels, which is how they are found again:
containers ``<project>-<service>-<n>`` labelled ``com.docker.compose.project/.service/.container-number/
.oneoff/.config-hash``, networks ``<project>_<key>`` and volumes ``<project>_<key>`` labelled with the project
and their key. A service's config hash covers its create body and its image ID, so ``up`` recreates only
the services whose configuration (or image) changed.

Errors: engine answers raise :mod:`backend.api.errors`; what Compose itself refuses (a dependency that
failed, an unknown service) raises :class:`~backend.compose.model.ComposeError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from backend.api.build_context import write_context
from backend.api.client import EngineClient
from backend.api.errors import NotFoundError
from backend.api.types import ContainerSummary
from backend.compose.model import ComposeError, DependsOnCondition, Project, Service, ServiceVolume

COMPOSE_VERSION = "2.20.0"
"""The Compose version written in ``com.docker.compose.version`` (the Compose format Berth follows)."""

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_NUMBER = "com.docker.compose.container-number"
LABEL_ONEOFF = "com.docker.compose.oneoff"
LABEL_HASH = "com.docker.compose.config-hash"
LABEL_WORKING_DIR = "com.docker.compose.project.working_dir"
LABEL_CONFIG_FILES = "com.docker.compose.project.config_files"
LABEL_VERSION = "com.docker.compose.version"
LABEL_NETWORK = "com.docker.compose.network"
LABEL_VOLUME = "com.docker.compose.volume"

Emit = Callable[[str], None]


def container_number(container: ContainerSummary) -> int:
    """The ``container-number`` label (0 when missing or malformed)."""
    text = container.labels.get(LABEL_NUMBER, "")
    return int(text) if text.isdigit() else 0


def container_name(container: ContainerSummary) -> str:
    """The container's name without Docker's leading ``/``."""
    return container.names[0].lstrip("/") if container.names else container.id[:12]


def image_name(project: Project, service: Service) -> str:
    """The image a service runs: ``image``, else ``<project>-<service>`` (what ``build`` tags)."""
    return service.image or f"{project.name}-{service.name}"


def dependency_order(project: Project, names: Iterable[str] | None = None) -> list[str]:
    """The services ``names`` (all when None) and, transitively, the dependencies they require, each after its
    dependencies. Raises ComposeError for a dependency cycle or an unknown service."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ComposeError(f"dependency cycle detected at service {name!r}")
        service = project.service(name)
        visiting.add(name)
        for dep, spec in service.depends_on.items():
            if dep in project.services or spec.required:
                visit(dep)
        visiting.discard(name)
        order.append(name)

    for name in (project.services if names is None else names):
        visit(name)
    return order


def _mount(project: Project, volume: ServiceVolume) -> dict[str, Any]:
    mount: dict[str, Any] = {"Type": volume.type, "Target": volume.target, "ReadOnly": volume.read_only}
    if volume.type == "volume" and volume.source:
        mount["Source"] = project.volumes[volume.source].name
        if volume.volume_nocopy:
            mount["VolumeOptions"] = {"NoCopy": True}
    elif volume.type == "bind":
        mount["Source"] = volume.source
        if volume.bind_propagation:
            mount["BindOptions"] = {"Propagation": volume.bind_propagation}
    elif volume.type == "tmpfs":
        options = {k: v for k, v in (("SizeBytes", volume.tmpfs_size), ("Mode", volume.tmpfs_mode)) if v is not None}
        if options:
            mount["TmpfsOptions"] = options
    return mount


def _nanoseconds(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1e9)


def _healthcheck(service: Service) -> dict[str, Any] | None:
    check = service.healthcheck
    if check is None:
        return None
    if check.disable:
        return {"Test": ["NONE"]}
    doc = {"Test": check.test, "Interval": _nanoseconds(check.interval), "Timeout": _nanoseconds(check.timeout),
           "Retries": check.retries, "StartPeriod": _nanoseconds(check.start_period)}
    return {k: v for k, v in doc.items() if v is not None}


def network_names(project: Project, service: Service) -> list[str]:
    """The engine names of the service's networks, highest priority first (empty with ``network_mode``)."""
    keys = sorted(service.networks, key=lambda k: -service.networks[k].priority)
    return [project.networks[k].name for k in keys]


def _endpoint(project: Project, service: Service, key: str) -> dict[str, Any]:
    attachment = service.networks[key]
    endpoint: dict[str, Any] = {"Aliases": [service.name, *attachment.aliases]}
    ipam = {k: v for k, v in (("IPv4Address", attachment.ipv4_address), ("IPv6Address", attachment.ipv6_address))
            if v}
    if ipam:
        endpoint["IPAMConfig"] = ipam
    return endpoint


def create_body(project: Project, service: Service, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``POST /containers/create`` body of a service's containers, without the per-container labels
    (number, hash) and with only the first network (the others are connected before start)."""
    environ = dict(os.environ) if environ is None else environ
    env = [f"{k}={v}" if v is not None else f"{k}={environ[k]}" for k, v in service.environment.items()
           if v is not None or k in environ]
    ports: dict[str, list[dict[str, str]]] = {}
    for port in service.ports:
        # "8000" alone publishes on a random host port, as in Compose (``expose`` is for unpublished ports)
        ports.setdefault(f"{port.target}/{port.protocol}", []).append(
            {"HostIp": port.host_ip, "HostPort": port.published})
    exposed: dict[str, dict[str, str]] = {key: {} for key in ports}
    exposed.update({(e if "/" in e else f"{e}/tcp"): {} for e in service.expose})
    restart_name, _, retries = (service.restart or "no").partition(":")
    labels = {**(service.deploy.labels if service.deploy else {}), **service.labels,
              LABEL_PROJECT: project.name, LABEL_SERVICE: service.name, LABEL_ONEOFF: "False",
              LABEL_WORKING_DIR: project.working_dir, LABEL_CONFIG_FILES: ",".join(project.config_files),
              LABEL_VERSION: COMPOSE_VERSION}
    networks = sorted(service.networks, key=lambda k: -service.networks[k].priority)
    host_config: dict[str, Any] = {
        "Mounts": [_mount(project, v) for v in service.volumes],
        "PortBindings": ports,
        "RestartPolicy": {"Name": restart_name, "MaximumRetryCount": int(retries or 0)},
        "NetworkMode": service.network_mode or (project.networks[networks[0]].name if networks else "none"),
        "Init": service.init, "Privileged": service.privileged, "ReadonlyRootfs": service.read_only,
        "Tmpfs": {t.partition(":")[0]: t.partition(":")[2] for t in service.tmpfs},
        "CapAdd": service.cap_add, "CapDrop": service.cap_drop, "SecurityOpt": service.security_opt,
        "Dns": service.dns, "DnsSearch": service.dns_search, "DnsOptions": service.dns_opt,
        "ExtraHosts": service.extra_hosts, "Sysctls": service.sysctls,
        "Ulimits": [{"Name": k, "Soft": u.soft, "Hard": u.hard} for k, u in service.ulimits.items()],
        "Memory": service.memory_limit or 0, "NanoCpus": int((service.cpu_limit or 0) * 1e9),
        "PidsLimit": service.pids_limit, "ShmSize": service.shm_size, "Runtime": service.runtime,
    }
    body: dict[str, Any] = {
        "Image": image_name(project, service), "Cmd": service.command, "Entrypoint": service.entrypoint,
        "Env": env, "Labels": labels, "WorkingDir": service.working_dir or "", "User": service.user or "",
        "Hostname": service.hostname or "", "Domainname": service.domainname or "", "Tty": service.tty,
        "OpenStdin": service.stdin_open, "AttachStdout": True, "AttachStderr": True,
        "StopSignal": service.stop_signal, "ExposedPorts": exposed, "Healthcheck": _healthcheck(service),
        "HostConfig": {k: v for k, v in host_config.items() if v is not None},
    }
    if service.stop_grace_period is not None:
        body["StopTimeout"] = int(service.stop_grace_period)
    if networks and not service.network_mode:
        body["NetworkingConfig"] = {"EndpointsConfig": {
            project.networks[networks[0]].name: _endpoint(project, service, networks[0])}}
    return {k: v for k, v in body.items() if v is not None}


def config_hash(body: dict[str, Any], image_id: str, extra_networks: Sequence[str]) -> str:
    """The hash that says whether a container still matches its service's configuration."""
    doc = json.dumps([body, image_id, list(extra_networks)], sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()


def context_tar(context: str, dockerfile: str, out: IO[bytes]) -> str:
    """Write the build context ``context`` as a tar to ``out``, minus what its ``.dockerignore`` excludes (the
    Dockerfile and ``.dockerignore`` are always sent); returns the Dockerfile's name in it. Raises ComposeError
    for a missing context or a bad pattern."""
    if not os.path.isdir(context):
        raise ComposeError(f"build context {context!r} is not a directory")
    try:
        return write_context(context, out, os.path.join(context, dockerfile))
    except ValueError as exc:
        raise ComposeError(f"{context}/.dockerignore: {exc}") from None


async def _file_chunks(f: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := f.read(1 << 20):
        yield chunk


@dataclass(frozen=True)
class UpOptions:
    """``compose up``'s choices. ``services`` empty means all; ``scale`` overrides replicas per service."""

    services: Sequence[str] = ()
    build: bool = False
    no_build: bool = False
    pull: str = "missing"
    force_recreate: bool = False
    no_deps: bool = False
    remove_orphans: bool = False
    scale: dict[str, int] = field(default_factory=dict)
    wait: bool = False
    start: bool = True


class Orchestrator:
    """Compose operations on one project through one engine client. ``emit`` receives one progress line per
    resource change (``Container p-web-1  Started``)."""

    def __init__(self, client: EngineClient, project: Project, emit: Emit,
                 environ: dict[str, str] | None = None) -> None:
        self.client = client
        self.project = project
        self.emit = emit
        self.environ = dict(os.environ) if environ is None else environ

    # -- discovery -----------------------------------------------------------------------------------

    async def containers(self, services: Sequence[str] = (), *, all: bool = True,
                         oneoff: bool = False) -> list[ContainerSummary]:
        """The project's containers (of ``services`` when given), by service then number."""
        filters = [f"{LABEL_PROJECT}={self.project.name}", f"{LABEL_ONEOFF}={'True' if oneoff else 'False'}"]
        if len(services) == 1:
            filters.append(f"{LABEL_SERVICE}={services[0]}")
        found = await self.client.list_containers(all=all, filters={"label": filters})
        found = [c for c in found if not services or c.labels.get(LABEL_SERVICE) in services]
        return sorted(found, key=lambda c: (c.labels.get(LABEL_SERVICE, ""), container_number(c)))

    async def orphans(self) -> list[ContainerSummary]:
        """Containers of the project whose service is not in the Compose file (nor disabled by a profile)."""
        known = {*self.project.services, *self.project.disabled_services}
        return [c for c in await self.containers() if c.labels.get(LABEL_SERVICE) not in known]

    # -- images --------------------------------------------------------------------------------------

    async def build(self, services: Sequence[str] = (), *, on_message: Callable[[dict[str, Any]], None],
                    no_cache: bool = False, pull: bool = False) -> None:
        """Build the images of the services (all with ``build``) that have a build section. Raises
        StreamError for a failed build."""
        for name in services or list(self.project.services):
            service = self.project.service(name)
            if service.build is not None:
                await self._build_one(service, on_message, no_cache=no_cache, pull=pull)

    async def _build_one(self, service: Service, on_message: Callable[[dict[str, Any]], None], *,
                         no_cache: bool = False, pull: bool = False) -> None:
        spec = service.build
        assert spec is not None
        tag = image_name(self.project, service)
        self.emit(f"Building {service.name} ({tag})")
        args = {k: v if v is not None else self.environ.get(k, "") for k, v in spec.args.items()
                if v is not None or k in self.environ}
        with tempfile.TemporaryFile() as spool:
            dockerfile = context_tar(spec.context, spec.dockerfile, spool)
            spool.seek(0)
            async for message in self.client.build(
                    _file_chunks(spool), tags=[tag], dockerfile=dockerfile, build_args=args,
                    target=spec.target, nocache=no_cache or spec.no_cache, pull=pull or spec.pull,
                    labels={**spec.labels, LABEL_PROJECT: self.project.name, LABEL_SERVICE: service.name}):
                on_message(message)

    async def pull(self, services: Sequence[str] = (), *, on_message: Callable[[dict[str, Any]], None],
                   missing_only: bool = False) -> None:
        """Pull the images of services that have ``image`` (all, or ``services``); with ``missing_only`` only
        those not present yet. Raises StreamError for a failed pull."""
        for name in services or list(self.project.services):
            service = self.project.service(name)
            if service.image is None or (missing_only and await self._image_id(service.image)):
                continue
            self.emit(f"Pulling {service.name} ({service.image})")
            async for message in self.client.pull(service.image, platform=service.platform):
                on_message(message)

    async def push(self, services: Sequence[str] = (), *, on_message: Callable[[dict[str, Any]], None]) -> None:
        """Push the images of services that have both ``image`` and ``build``."""
        for name in services or list(self.project.services):
            service = self.project.service(name)
            if service.image is not None and service.build is not None:
                self.emit(f"Pushing {service.name} ({service.image})")
                async for message in self.client.push(service.image):
                    on_message(message)

    async def _image_id(self, ref: str) -> str:
        try:
            return (await self.client.inspect_image(ref)).id
        except NotFoundError:
            return ""

    async def _ensure_image(self, service: Service, options: UpOptions,
                            on_message: Callable[[dict[str, Any]], None]) -> str:
        """The service's image ID, after building or pulling it as ``options`` say. Raises ComposeError
        when the image is missing and may not be built."""
        ref = image_name(self.project, service)
        image_id = await self._image_id(ref)
        if service.build is not None and (options.build or not image_id):
            if options.no_build and not image_id:
                raise ComposeError(f"service {service.name!r} has no image {ref!r} and --no-build was given")
            if not options.no_build:
                await self._build_one(service, on_message)
                return await self._image_id(ref)
        if service.image is not None and (options.pull == "always" or not image_id):
            if options.pull == "never":
                raise ComposeError(f"service {service.name!r}: no such image {ref!r} (pull policy never)")
            self.emit(f"Pulling {service.name} ({ref})")
            async for message in self.client.pull(ref, platform=service.platform):
                on_message(message)
            return await self._image_id(ref)
        return image_id

    # -- networks and volumes ------------------------------------------------------------------------

    async def _ensure_networks(self, keys: Iterable[str]) -> None:
        for key in sorted(set(keys)):
            config = self.project.networks[key]
            try:
                await self.client.inspect_network(config.name)
                continue
            except NotFoundError:
                if config.external:
                    raise ComposeError(f"network {config.name} declared as external, but could not be found") \
                        from None
            await self.client.create_network(
                config.name, driver=config.driver or "bridge", internal=config.internal,
                attachable=config.attachable, options=config.driver_opts,
                subnet=config.ipam_config[0].get("subnet", "") if config.ipam_config else "",
                gateway=config.ipam_config[0].get("gateway", "") if config.ipam_config else "",
                labels={**config.labels, LABEL_PROJECT: self.project.name, LABEL_NETWORK: key,
                        LABEL_VERSION: COMPOSE_VERSION})
            self.emit(f"Network {config.name}  Created")

    async def _ensure_volumes(self, keys: Iterable[str]) -> None:
        for key in sorted(set(keys)):
            config = self.project.volumes[key]
            try:
                await self.client.inspect_volume(config.name)
                continue
            except NotFoundError:
                if config.external:
                    raise ComposeError(f"external volume {config.name!r} not found") from None
            await self.client.create_volume(config.name, driver=config.driver or "local", options=config.driver_opts,
                                            labels={**config.labels, LABEL_PROJECT: self.project.name,
                                                    LABEL_VOLUME: key, LABEL_VERSION: COMPOSE_VERSION})
            self.emit(f"Volume {config.name}  Created")

    # -- up ------------------------------------------------------------------------------------------

    async def up(self, options: UpOptions, on_message: Callable[[dict[str, Any]], None]) -> list[str]:
        """Converge the services (``options.services`` and, unless ``no_deps``, their dependencies): networks
        and volumes created, images built or pulled, containers created, recreated when their config hash
        changed (or ``force_recreate``), scaled, started in dependency order once their dependencies meet
        their conditions; with ``wait``, until every started container is running and healthy. Returns the
        names of the service containers. Raises ComposeError when a dependency fails its condition."""
        project = self.project
        names = list(options.services) if options.no_deps and options.services else \
            dependency_order(project, options.services or None)
        for name in options.scale:
            project.service(name)
        orphans = await self.orphans()
        if orphans and options.remove_orphans:
            await self._remove(orphans, stop=True)
        elif orphans:
            self.emit(f"Found orphan containers ({', '.join(container_name(c) for c in orphans)}) for this project. "
                      "If you removed or renamed this service in your compose file, you can run this command "
                      "with the --remove-orphans flag to clean it up.")
        services = [project.service(n) for n in names]
        await self._ensure_networks(k for s in services if not s.network_mode for k in s.networks)
        await self._ensure_volumes(v.source for s in services for v in s.volumes if v.type == "volume" and v.source)
        images = {s.name: await self._ensure_image(s, options, on_message) for s in services}
        done: dict[str, asyncio.Future[list[str]]] = {n: asyncio.get_running_loop().create_future() for n in names}

        async def converge(service: Service) -> None:
            try:
                for dep, spec in service.depends_on.items():
                    if dep in done:
                        await self._wait_condition(dep, await asyncio.shield(done[dep]), spec.condition)
                replicas = options.scale.get(service.name, service.replicas)
                done[service.name].set_result(await self._converge(service, images[service.name], replicas,
                                                                   options))
            except BaseException as exc:
                if not done[service.name].done():
                    done[service.name].set_exception(exc)
                raise

        results = await asyncio.gather(*(converge(s) for s in services), return_exceptions=True)
        for fut in done.values():
            if fut.done() and not fut.cancelled():
                fut.exception()  # mark retrieved
        for result in results:
            if isinstance(result, BaseException):
                raise result
        started = [c for n in names for c in done[n].result()]
        if options.wait:
            for name in names:
                for container in done[name].result():
                    await self._wait_healthy(container)
        return started

    async def _converge(self, service: Service, image_id: str, replicas: int, options: UpOptions) -> list[str]:
        body = create_body(self.project, service, self.environ)
        extra = network_names(self.project, service)[1:] if not service.network_mode else []
        digest = config_hash(body, image_id, extra)
        names: list[str] = []
        created: list[str] = []
        numbers = [0]
        for container in await self.containers([service.name]):
            number = container_number(container)
            numbers.append(number)
            if len(names) >= replicas:
                await self._remove([container], stop=True)
            elif options.force_recreate or container.labels.get(LABEL_HASH) != digest:
                await self._remove([container], stop=True, verb="Recreate")
                names.append(await self._create(service, body, digest, number, extra))
                created.append(names[-1])
            else:
                names.append(container_name(container))
                if container.state in ("created", "exited"):
                    created.append(names[-1])
        number = max(numbers)
        while len(names) < replicas:
            number += 1
            names.append(await self._create(service, body, digest, number, extra))
            created.append(names[-1])
        if options.start:
            for name in created:
                await self.client.start_container(name)
                self.emit(f"Container {name}  Started")
        return names

    async def _create(self, service: Service, body: dict[str, Any], digest: str, number: int,
                      extra_networks: Sequence[str], *, oneoff: bool = False, name: str | None = None) -> str:
        labels = {**body["Labels"], LABEL_NUMBER: str(number), LABEL_HASH: digest,
                  LABEL_ONEOFF: "True" if oneoff else "False"}
        name = name or service.container_name or f"{self.project.name}-{service.name}-{number}"
        await self.client.create_container({**body, "Labels": labels}, name=name, platform=service.platform)
        keys = sorted(service.networks, key=lambda k: -service.networks[k].priority)[1:]
        for key, net in zip(keys, extra_networks, strict=True):
            await self.client.connect_network(net, name, aliases=_endpoint(self.project, service, key)["Aliases"])
        self.emit(f"Container {name}  Created")
        return name

    async def _wait_condition(self, service: str, containers: list[str], condition: DependsOnCondition) -> None:
        for name in containers:
            if condition is DependsOnCondition.HEALTHY:
                await self._wait_healthy(name, required=True)
            elif condition is DependsOnCondition.COMPLETED_SUCCESSFULLY:
                result = await self.client.wait_container(name)
                if result.status_code != 0:
                    raise ComposeError(f"service {service!r} didn't complete successfully: exit {result.status_code}")

    async def _wait_healthy(self, name: str, *, required: bool = False, timeout: float = 600.0) -> None:
        """Wait until the container is healthy (or running, when it has no health check). Raises ComposeError
        when it turns unhealthy or exits."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            state = (await self.client.inspect_container(name)).state
            health = state.get("Health") if isinstance(state.get("Health"), dict) else None
            status = str(health.get("Status", "")) if health else ""
            if not state.get("Running"):
                raise ComposeError(f"container {name} exited ({state.get('ExitCode', 0)})")
            if status == "unhealthy":
                raise ComposeError(f"dependency failed to start: container {name} is unhealthy")
            if status == "healthy" or (not health and not required):
                self.emit(f"Container {name}  Healthy" if status else f"Container {name}  Running")
                return
            if not health:
                raise ComposeError(f"container {name} has no healthcheck configured")
            if asyncio.get_running_loop().time() > deadline:
                raise ComposeError(f"container {name} did not become healthy in {timeout:.0f}s")
            await asyncio.sleep(0.2)

    # -- lifecycle -----------------------------------------------------------------------------------

    async def _remove(self, containers: Iterable[ContainerSummary], *, stop: bool, volumes: bool = False,
                      verb: str = "Remove") -> None:
        for container in containers:
            name = container_name(container)
            if stop and container.state in ("running", "paused", "restarting"):
                await self.client.stop_container(container.id)
                self.emit(f"Container {name}  Stopped")
            await self.client.remove_container(container.id, force=True, volumes=volumes)
            self.emit(f"Container {name}  {verb}d")

    async def each(self, services: Sequence[str], action: Callable[[str], Awaitable[None]], verb: str, *,
                   reverse: bool = False, all: bool = True) -> None:
        """Run ``action`` on the name of every service container of ``services`` (all when empty), in
        dependency order (reversed with ``reverse``), emitting ``Container <name>  <verb>``."""
        order = dependency_order(self.project, [s for s in services if s in self.project.services] or None)
        containers = await self.containers(services, all=all)
        rank = {n: i for i, n in enumerate(order)}
        containers.sort(key=lambda c: rank.get(c.labels.get(LABEL_SERVICE, ""), -1), reverse=reverse)
        for container in containers:
            await action(container.id)
            self.emit(f"Container {container_name(container)}  {verb}")

    async def down(self, *, volumes: bool = False, remove_orphans: bool = False, rmi: str | None = None) -> None:
        """Stop and remove the project's containers (orphans too with ``remove_orphans``), its networks, with
        ``volumes`` its named volumes, with ``rmi`` its images (``local``: those without ``image:``; ``all``)."""
        known = {*self.project.services, *self.project.disabled_services}
        containers = await self.containers(all=True) + await self.containers(all=True, oneoff=True)
        orphans = [c for c in containers if c.labels.get(LABEL_SERVICE) not in known]
        if orphans and not remove_orphans:
            self.emit(f"Found orphan containers ({', '.join(container_name(c) for c in orphans)}) for this "
                      "project. Run with --remove-orphans to clean them up.")
        order = {n: i for i, n in enumerate(dependency_order(self.project))}
        doomed = [c for c in containers if remove_orphans or c not in orphans]
        doomed.sort(key=lambda c: order.get(c.labels.get(LABEL_SERVICE, ""), -1), reverse=True)
        await asyncio.gather(*(self._remove([c], stop=True) for c in doomed))
        for config in self.project.networks.values():
            if config.external:
                continue
            try:
                network = await self.client.inspect_network(config.name)
            except NotFoundError:
                continue
            if network.labels.get(LABEL_PROJECT) == self.project.name:
                await self.client.remove_network(network.id)
                self.emit(f"Network {config.name}  Removed")
        if volumes:
            for volume in self.project.volumes.values():
                if not volume.external:
                    try:
                        await self.client.remove_volume(volume.name)
                        self.emit(f"Volume {volume.name}  Removed")
                    except NotFoundError:
                        pass
        if rmi:
            for service in self.project.services.values():
                if rmi == "all" or service.image is None:
                    try:
                        await self.client.remove_image(image_name(self.project, service))
                        self.emit(f"Image {image_name(self.project, service)}  Removed")
                    except NotFoundError:
                        pass

    async def run_oneoff(self, service_name: str, command: Sequence[str] | None, *, environment: Sequence[str] = (),
                         user: str | None = None, workdir: str | None = None, entrypoint: list[str] | None = None,
                         name: str | None = None, no_deps: bool = False, tty: bool = False, stdin: bool = False,
                         remove_ports: bool = True, auto_remove: bool = False) -> str:
        """Create (not start) a one-off container of the service, after bringing up its dependencies unless
        ``no_deps``; ``auto_remove`` removes it when it exits. Returns its name."""
        service = self.project.service(service_name)
        if not no_deps and service.depends_on:
            deps = [d for d in dependency_order(self.project, [service_name]) if d != service_name]
            await self.up(UpOptions(services=deps, no_deps=True), lambda m: None)
        await self._ensure_networks(k for k in service.networks if not service.network_mode)
        await self._ensure_volumes(v.source for v in service.volumes if v.type == "volume" and v.source)
        image_id = await self._ensure_image(service, UpOptions(), lambda m: None)
        body = create_body(self.project, service, self.environ)
        if command:
            body["Cmd"] = list(command)
        if entrypoint is not None:
            body["Entrypoint"] = entrypoint
        body["Env"] = [*body.get("Env", []), *environment]
        body.update({k: v for k, v in (("User", user), ("WorkingDir", workdir)) if v is not None})
        body.update(Tty=tty, OpenStdin=stdin, AttachStdin=stdin, StdinOnce=stdin)
        body["HostConfig"]["AutoRemove"] = auto_remove
        if remove_ports:
            body["HostConfig"].pop("PortBindings", None)
        extra = network_names(self.project, service)[1:] if not service.network_mode else []
        existing = await self.containers([service_name], oneoff=True)
        number = max([0, *(container_number(c) for c in existing)]) + 1
        suffix = hashlib.sha256(os.urandom(8)).hexdigest()[:12]
        return await self._create(service, body, config_hash(body, image_id, extra), number, extra, oneoff=True,
                                  name=name or f"{self.project.name}-{service_name}-run-{suffix}")


async def list_projects(client: EngineClient) -> dict[str, list[ContainerSummary]]:
    """Every Compose project the engine has containers of: name -> its containers."""
    projects: dict[str, list[ContainerSummary]] = {}
    for container in await client.list_containers(all=True, filters={"label": [LABEL_PROJECT]}):
        projects.setdefault(container.labels[LABEL_PROJECT], []).append(container)
    return dict(sorted(projects.items()))

