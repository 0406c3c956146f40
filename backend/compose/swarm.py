"""Compose projects as swarm stacks: ``docker stack deploy``'s mapping of a Compose file to ``/services``.

A stack ``NAME`` is the project loaded with the project name ``NAME``: its networks become overlay networks
``NAME_<key>`` and its services swarm services ``NAME_<service>``, every object labelled
``com.docker.stack.namespace=NAME`` (as Docker's stack does, so ``docker stack ls`` sees Berth's stacks and the
other way round). ``deploy:`` maps to the service spec: ``mode``/``replicas``, ``resources`` (limits and
reservations), ``restart_policy``, ``placement`` (constraints, spread preferences, max replicas per node),
``update_config`` and ``labels`` (on the service; the service's own ``labels`` go on its containers). A
deploy again updates the services that exist (at their version) and creates the others; services of the
stack that left the file are removed (``--prune``). Builds are not done: a stack needs images.

Errors: ComposeError for what a stack cannot run (a service without ``image``, ``network_mode``), the
backend.api errors of the engine (503 when it is no swarm manager) as they come.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backend.api.client import EngineClient
from backend.api.swarm_types import Service as SwarmService
from backend.compose.model import ComposeError, DeployPolicy, Project, ResourceLimits, Service

STACK_LABEL = "com.docker.stack.namespace"
_NANO = 1_000_000_000


def _ns(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * _NANO)


def _compact(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` without the keys whose value is None or empty."""
    return {k: v for k, v in doc.items() if v not in (None, {}, [], "")}


def _resources(limits: ResourceLimits) -> dict[str, Any]:
    return _compact({"NanoCPUs": int(limits.cpus * _NANO) if limits.cpus is not None else None,
                     "MemoryBytes": limits.memory, "Pids": limits.pids})


def _restart_policy(policy: DeployPolicy | None, restart: str | None) -> dict[str, Any]:
    if policy is None:  # docker stack: ``restart:`` is a fallback for ``deploy.restart_policy``
        condition = {"no": "none", "on-failure": "on-failure"}.get((restart or "").split(":")[0], "any")
        return {"Condition": condition}
    return _compact({"Condition": policy.condition or "any", "Delay": _ns(policy.delay),
                     "MaxAttempts": policy.max_attempts, "Window": _ns(policy.window)})


def _update_config(policy: DeployPolicy | None) -> dict[str, Any]:
    if policy is None:
        return {}
    return _compact({"Parallelism": policy.parallelism, "Delay": _ns(policy.delay),
                     "FailureAction": policy.failure_action, "Monitor": _ns(policy.monitor),
                     "MaxFailureRatio": policy.max_failure_ratio, "Order": policy.order})


def _mounts(service: Service, project: Project, stack: str) -> list[dict[str, Any]]:
    mounts = []
    for volume in service.volumes:
        source = volume.source
        if volume.type == "volume" and source in project.volumes:
            source = project.volumes[source].name
        mounts.append(_compact({"Type": volume.type, "Source": source, "Target": volume.target,
                                "ReadOnly": volume.read_only or None,
                                "VolumeOptions": {"Labels": {STACK_LABEL: stack}} if volume.type == "volume"
                                else None}))
    return mounts


def service_spec(project: Project, service: Service, stack: str) -> dict[str, Any]:
    """The ``/services/create`` body for one Compose service. Raises ComposeError."""
    if not service.image:
        raise ComposeError(f"service {service.name}: a stack needs an image (builds are not done by stack deploy)")
    if service.network_mode:
        raise ComposeError(f"service {service.name}: network_mode is not supported by swarm services")
    deploy = service.deploy
    labels = {STACK_LABEL: stack}
    container = _compact({
        "Image": service.image, "Command": service.entrypoint, "Args": service.command,
        "Env": [f"{k}={v}" for k, v in service.environment.items() if v is not None],
        "Labels": {**service.labels, **labels}, "Hostname": service.hostname, "User": service.user,
        "Dir": service.working_dir, "TTY": service.tty or None, "OpenStdin": service.stdin_open or None,
        "StopSignal": service.stop_signal, "StopGracePeriod": _ns(service.stop_grace_period),
        "Init": service.init, "ReadOnly": service.read_only or None, "Mounts": _mounts(service, project, stack),
        "CapabilityAdd": service.cap_add, "CapabilityDrop": service.cap_drop, "Sysctls": service.sysctls})
    placement = _compact({
        "Constraints": deploy.constraints if deploy else None,
        "Preferences": [{"Spread": {"SpreadDescriptor": p}} for p in deploy.preferences] if deploy else None,
        "MaxReplicas": deploy.max_replicas_per_node if deploy else None})
    limits = _resources(deploy.limits) if deploy else {}
    if service.memory_limit is not None:
        limits["MemoryBytes"] = service.memory_limit
    if service.cpu_limit is not None:
        limits["NanoCPUs"] = int(service.cpu_limit * _NANO)
    task = _compact({
        "ContainerSpec": container,
        "Resources": _compact({"Limits": limits, "Reservations": _resources(deploy.reservations) if deploy else {}}),
        "RestartPolicy": _restart_policy(deploy.restart_policy if deploy else None, service.restart),
        "Placement": placement,
        "Networks": [{"Target": project.networks[key].name, "Aliases": [service.name, *net.aliases]}
                     for key, net in service.networks.items()]})
    mode = ({"Global": {}} if deploy and deploy.mode == "global"
            else {"Replicated": {"Replicas": service.replicas}})
    ports = [_compact({"Protocol": p.protocol, "TargetPort": p.target,
                       "PublishedPort": int(p.published.split("-")[0]) if p.published else None,
                       "PublishMode": "host" if p.mode == "host" else "ingress"}) for p in service.ports]
    return _compact({"Name": f"{stack}_{service.name}", "Labels": {**(deploy.labels if deploy else {}), **labels},
                     "TaskTemplate": task, "Mode": mode, "UpdateConfig": _update_config(
                         deploy.update_config if deploy else None),
                     "EndpointSpec": {"Ports": ports} if ports else None})


@dataclass(frozen=True)
class StackSummary:
    """A stack seen on the engine: its name and how many services it has."""

    name: str
    services: int


def _stack_filter(stack: str) -> dict[str, list[str]]:
    return {"label": [f"{STACK_LABEL}={stack}"]}


async def deploy_stack(client: EngineClient, project: Project, stack: str, *, prune: bool = False,
                       progress: Callable[[str], None] = lambda _: None) -> None:
    """Create or update the stack ``stack`` from ``project`` (module docstring); ``progress`` gets docker's
    lines (``Creating network ...``, ``Creating service ...``, ``Updating service ...``). Raises ComposeError
    before anything changes for a service a stack cannot run; engine errors as they come."""
    specs = [service_spec(project, service, stack) for service in project.services.values()]
    existing_networks = {n.name for n in await client.list_networks(filters=_stack_filter(stack))}
    used = {key for service in project.services.values() for key in service.networks}
    for key in sorted(used):
        network = project.networks[key]
        if network.external or network.name in existing_networks:
            continue
        progress(f"Creating network {network.name}")
        await client.create_network(network.name, driver=network.driver or "overlay",
                                    attachable=network.attachable, internal=network.internal,
                                    labels={**network.labels, STACK_LABEL: stack}, options=network.driver_opts)
    current = {s.name: s for s in await client.list_services(filters=_stack_filter(stack))}
    for spec in specs:
        name = spec["Name"]
        if name in current:
            progress(f"Updating service {name} (id: {current[name].id})")
            await client.update_service(current[name].id, current[name].version, spec)
        else:
            progress(f"Creating service {name}")
            await client.create_service(spec)
    if prune:
        wanted = {spec["Name"] for spec in specs}
        for name, service in current.items():
            if name not in wanted:
                progress(f"Removing service {name}")
                await client.remove_service(service.id)


async def stack_services(client: EngineClient, stack: str) -> list[SwarmService]:
    """The services of ``stack`` (empty when there is no such stack)."""
    return await client.list_services(filters=_stack_filter(stack))


async def list_stacks(client: EngineClient) -> list[StackSummary]:
    """Every stack on the engine (services labelled with a stack namespace), by name."""
    counts: dict[str, int] = {}
    for service in await client.list_services(filters={"label": [STACK_LABEL]}):
        name = service.labels.get(STACK_LABEL, "")
        counts[name] = counts.get(name, 0) + 1
    return [StackSummary(name, counts[name]) for name in sorted(counts)]


async def remove_stack(client: EngineClient, stack: str, *,
                       progress: Callable[[str], None] = lambda _: None) -> bool:
    """Remove the services, then the networks of ``stack``. False when there was nothing to remove."""
    services = await stack_services(client, stack)
    networks = await client.list_networks(filters=_stack_filter(stack))
    for service in services:
        progress(f"Removing service {service.name}")
        await client.remove_service(service.id)
    for network in networks:
        progress(f"Removing network {network.name}")
        await client.remove_network(network.id)
    return bool(services or networks)
