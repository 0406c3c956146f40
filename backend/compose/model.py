"""The normalised Compose project: what every Compose file (short or long syntax, several ``-f`` files,
``extends``, interpolation) becomes once loaded.

Invariants of a loaded :class:`Project` (guaranteed by :func:`load_project`):

- every value is interpolated, merged and validated; short syntax is expanded to the long form;
- durations are seconds (float), memory sizes bytes (int), ``cpus`` a float;
- relative bind sources, build contexts and env files are absolute paths (against the project directory);
- ``services`` holds only the services enabled by the active profiles, in file order;
- every network a service names exists in ``Project.networks`` (``default`` is added when a service uses it),
  every named volume a service mounts exists in ``Project.volumes``.

The dataclasses are frozen; treat their lists and dicts as read-only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum


class ComposeError(ValueError):
    """A Compose file the loader refuses. The message is one line naming the file, the service and the key:
    ``compose.yaml: services.web.ports[0]: invalid port '80:80:80:80'``."""


class DependsOnCondition(StrEnum):
    """When a dependency counts as ready for its dependants."""

    STARTED = "service_started"
    HEALTHY = "service_healthy"
    COMPLETED_SUCCESSFULLY = "service_completed_successfully"


@dataclass(frozen=True)
class PortConfig:
    """One published or container port (long syntax). ``published`` is ``""`` (random host port), ``"8080"``
    or a range ``"8000-8010"``; ``host_ip`` is ``""`` for all addresses; ``mode`` is ``ingress`` or ``host``."""

    target: int
    published: str = ""
    host_ip: str = ""
    protocol: str = "tcp"
    mode: str = "ingress"


@dataclass(frozen=True)
class ServiceVolume:
    """One mount of a service (long syntax). ``type`` is ``volume``, ``bind``, ``tmpfs`` or ``npipe``; ``source``
    is a volume name (a key of ``Project.volumes``), an absolute host path, or ``""`` for an anonymous volume
    or tmpfs."""

    type: str
    target: str
    source: str = ""
    read_only: bool = False
    bind_propagation: str | None = None
    bind_create_host_path: bool = True
    bind_selinux: str | None = None
    volume_nocopy: bool = False
    volume_subpath: str | None = None
    tmpfs_size: int | None = None
    tmpfs_mode: int | None = None
    consistency: str | None = None


@dataclass(frozen=True)
class DependsOn:
    """A dependency: start after it, once ``condition`` holds. ``restart`` restarts the dependant when the
    dependency is updated; a dependency with ``required=False`` may be missing or disabled."""

    condition: DependsOnCondition = DependsOnCondition.STARTED
    restart: bool = False
    required: bool = True


@dataclass(frozen=True)
class Healthcheck:
    """A service's health check. ``test`` is Docker's form (``["CMD", ...]``, ``["CMD-SHELL", "cmd"]`` or
    ``["NONE"]``); durations are seconds, None when not set (the image's or the engine's default applies).
    ``disable`` means no health check at all (also set for ``test: ["NONE"]``)."""

    test: list[str] | None = None
    interval: float | None = None
    timeout: float | None = None
    retries: int | None = None
    start_period: float | None = None
    start_interval: float | None = None
    disable: bool = False


@dataclass(frozen=True)
class ServiceNetwork:
    """A service's attachment to a project network (the key in ``Service.networks``)."""

    aliases: list[str] = field(default_factory=list)
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    priority: int = 0


@dataclass(frozen=True)
class BuildConfig:
    """How to build a service's image. ``context`` is an absolute path (or a URL); ``dockerfile`` is relative
    to it (default ``Dockerfile``); ``args`` values None mean "take it from the environment"."""

    context: str
    dockerfile: str = "Dockerfile"
    args: dict[str, str | None] = field(default_factory=dict)
    target: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    network: str | None = None
    no_cache: bool = False
    pull: bool = False
    extra_hosts: list[str] = field(default_factory=list)
    shm_size: int | None = None


@dataclass(frozen=True)
class ResourceLimits:
    """``deploy.resources.limits`` or ``.reservations``: cpus as a float, memory in bytes, pids a count."""

    cpus: float | None = None
    memory: int | None = None
    pids: int | None = None


@dataclass(frozen=True)
class DeployPolicy:
    """``deploy.restart_policy`` or ``deploy.update_config`` (durations in seconds); swarm reads them."""

    condition: str | None = None
    delay: float | None = None
    max_attempts: int | None = None
    window: float | None = None
    parallelism: int | None = None
    failure_action: str | None = None
    monitor: float | None = None
    max_failure_ratio: float | None = None
    order: str | None = None


@dataclass(frozen=True)
class Deploy:
    """The ``deploy`` section: what a single engine honours (replicas, limits, labels) and what only swarm
    does (mode, restart_policy, placement, update_config)."""

    replicas: int | None = None
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    reservations: ResourceLimits = field(default_factory=ResourceLimits)
    labels: dict[str, str] = field(default_factory=dict)
    mode: str = "replicated"
    restart_policy: DeployPolicy | None = None
    update_config: DeployPolicy | None = None
    constraints: list[str] = field(default_factory=list)
    preferences: list[str] = field(default_factory=list)
    """``placement.preferences``' ``spread`` values."""
    max_replicas_per_node: int | None = None


@dataclass(frozen=True)
class Ulimit:
    """One ulimit; the short syntax ``nofile: 1024`` gives soft = hard = 1024."""

    soft: int
    hard: int


@dataclass(frozen=True)
class Service:
    """One normalised service. None means "not set" (the image's or the engine's default applies);
    ``command``/``entrypoint`` are argv lists (a string in the file is split as a shell would).
    ``environment`` already includes the ``env_file`` entries (the file's own ``environment`` wins); a None
    value means the variable is passed through from the client's environment when it is set there."""

    name: str
    image: str | None = None
    build: BuildConfig | None = None
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    environment: dict[str, str | None] = field(default_factory=dict)
    env_file: list[str] = field(default_factory=list)
    ports: list[PortConfig] = field(default_factory=list)
    expose: list[str] = field(default_factory=list)
    volumes: list[ServiceVolume] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    networks: dict[str, ServiceNetwork] = field(default_factory=dict)
    network_mode: str | None = None
    depends_on: dict[str, DependsOn] = field(default_factory=dict)
    healthcheck: Healthcheck | None = None
    restart: str | None = None
    deploy: Deploy | None = None
    scale: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    container_name: str | None = None
    working_dir: str | None = None
    user: str | None = None
    hostname: str | None = None
    domainname: str | None = None
    init: bool | None = None
    tty: bool = False
    stdin_open: bool = False
    privileged: bool = False
    read_only: bool = False
    stop_signal: str | None = None
    stop_grace_period: float | None = None
    profiles: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_opt: list[str] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    ulimits: dict[str, Ulimit] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)
    mem_limit: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    shm_size: int | None = None
    pull_policy: str | None = None
    platform: str | None = None
    runtime: str | None = None

    @property
    def replicas(self) -> int:
        """How many containers the service wants: ``scale``, else ``deploy.replicas``, else 1."""
        if self.scale is not None:
            return self.scale
        if self.deploy is not None and self.deploy.replicas is not None:
            return self.deploy.replicas
        return 1

    @property
    def memory_limit(self) -> int | None:
        """The memory limit in bytes: ``mem_limit``, else ``deploy.resources.limits.memory``."""
        if self.mem_limit is not None:
            return self.mem_limit
        return self.deploy.limits.memory if self.deploy is not None else None

    @property
    def cpu_limit(self) -> float | None:
        """The CPU limit: ``cpus``, else ``deploy.resources.limits.cpus``."""
        if self.cpus is not None:
            return self.cpus
        return self.deploy.limits.cpus if self.deploy is not None else None


@dataclass(frozen=True)
class NetworkConfig:
    """A top-level network. ``name`` is the engine's name: ``<project>_<key>`` unless set explicitly or
    ``external`` (then the key itself unless ``name`` is given)."""

    name: str
    driver: str | None = None
    driver_opts: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    external: bool = False
    internal: bool = False
    attachable: bool = False
    enable_ipv6: bool = False
    ipam_driver: str | None = None
    ipam_config: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class VolumeConfig:
    """A top-level volume. ``name`` is the engine's name: ``<project>_<key>`` unless set explicitly or
    ``external`` (then the key itself unless ``name`` is given)."""

    name: str
    driver: str | None = None
    driver_opts: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    external: bool = False


@dataclass(frozen=True)
class Project:
    """A loaded project. ``name`` is normalised (lowercase ``[a-z0-9_-]``, starting with a letter or digit);
    ``working_dir`` and ``config_files`` are absolute; ``environment`` is what interpolation used (the
    process environment over the ``.env`` file); ``warnings`` are notices for the user (e.g. the obsolete
    ``version:``); ``disabled_services`` are the services left out by the active profiles."""

    name: str
    working_dir: str
    config_files: list[str]
    services: dict[str, Service]
    networks: dict[str, NetworkConfig] = field(default_factory=dict)
    volumes: dict[str, VolumeConfig] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    disabled_services: dict[str, Service] = field(default_factory=dict)

    def service(self, name: str) -> Service:
        """The enabled service ``name``. Raises ComposeError naming it when there is none."""
        try:
            return self.services[name]
        except KeyError:
            raise ComposeError(f"no such service: {name}") from None

    def enable(self, names: Sequence[str]) -> Project:
        """This project with the services ``names`` and their dependencies enabled even when their profiles
        are not active (``compose up svc`` does this). Raises ComposeError for a name that is no service."""
        enabled = dict(self.services)
        pending = list(names)
        while pending:
            name = pending.pop()
            if name in enabled:
                continue
            if name not in self.disabled_services:
                raise ComposeError(f"no such service: {name}")
            enabled[name] = self.disabled_services[name]
            pending.extend(d for d, dep in enabled[name].depends_on.items() if dep.required)
        order = [*self.services, *self.disabled_services]
        return replace(self, services={n: enabled[n] for n in order if n in enabled},
                       disabled_services={n: s for n, s in self.disabled_services.items() if n not in enabled})


def load_project(
    files: Sequence[str | os.PathLike[str]] = (),
    *,
    project_name: str | None = None,
    environment: Mapping[str, str] | None = None,
    working_dir: str | os.PathLike[str] | None = None,
    profiles: Sequence[str] = (),
) -> Project:
    """Load, interpolate, merge and validate a Compose project.

    ``files`` are the ``-f`` files in order (later ones override earlier ones); empty means the default file
    (``compose.yaml``, ``compose.yml``, ``docker-compose.yml``, ``docker-compose.yaml``) in ``working_dir``
    or its parents, plus its ``*.override.y*ml`` sibling. ``working_dir`` (the project directory) defaults to
    the first file's directory; ``environment`` to ``os.environ``, over the project directory's ``.env``.
    ``project_name`` (``-p``) wins over ``COMPOSE_PROJECT_NAME``, then ``name:``, then the directory's name.
    ``profiles`` adds to ``COMPOSE_PROFILES``; services without profiles are always enabled, and a service
    named on the command line is enabled by the caller with :meth:`Project.enable`.

    Raises ComposeError (one line naming file, service and key) for any unreadable, hostile or invalid input.
    """
    from backend.compose.validate import load

    return load(files, project_name=project_name, environment=environment, working_dir=working_dir,
                profiles=profiles)
