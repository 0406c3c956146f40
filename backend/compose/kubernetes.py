"""Compose projects as Kubernetes manifests (as kompose does), and applying them with the kubernetes client.

Per service: a ``Deployment`` (apps/v1; ``replicas``, image, entrypoint/command as command/args, ports,
resource limits and requests, health check as liveness probe, volumes), a ``ConfigMap`` ``<service>-env`` with
its environment (the containers read it with ``envFrom``) and, when it has ports or ``expose``, a ``Service``
(ClusterIP; the published port as ``port``). Named volumes become ``PersistentVolumeClaim`` s (ReadWriteOnce,
100Mi as kompose), ``tmpfs`` an in-memory ``emptyDir``; bind mounts have no cluster equivalent and are
refused. Names are made DNS-1123 labels (``_`` becomes ``-``, lower case); every object carries
``app.kubernetes.io/part-of: <project>``, pods ``io.kompose.service: <service>`` as kompose's.

:func:`convert` builds plain dicts (validated in the tests against the Kubernetes OpenAPI schemas that
``kubernetes-validate`` ships); :func:`write_manifests` writes them as YAML; :func:`apply` creates them with
the ``kubernetes`` client in the current kubeconfig context. Errors: ComposeError.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from backend.compose.model import ComposeError, Project, ResourceLimits, Service

PART_OF = "app.kubernetes.io/part-of"
SERVICE_LABEL = "io.kompose.service"
DEFAULT_STORAGE = "100Mi"


def k8s_name(name: str) -> str:
    """``name`` as a DNS-1123 label: lower case, ``[a-z0-9-]``, at most 63 characters. Raises ComposeError when
    nothing is left."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    if not label:
        raise ComposeError(f"{name!r} cannot be made a Kubernetes name")
    return label


def _meta(name: str, project: Project, **labels: str) -> dict[str, Any]:
    return {"name": name, "labels": {PART_OF: k8s_name(project.name), **labels}}


def _quantities(limits: ResourceLimits) -> dict[str, str]:
    out = {}
    if limits.cpus is not None:
        out["cpu"] = f"{round(limits.cpus * 1000)}m"
    if limits.memory is not None:
        out["memory"] = str(limits.memory)
    return out


def _ports(service: Service) -> list[tuple[int, int, str]]:
    """(service port, container port, protocol) of ``ports`` and ``expose``."""
    found: dict[tuple[int, str], int] = {}
    for port in service.ports:
        published = int(port.published.split("-")[0]) if port.published else port.target
        found.setdefault((port.target, port.protocol.upper()), published)
    for item in service.expose:
        number, _, protocol = item.partition("/")
        for target in range(int(number.split("-")[0]), int(number.split("-")[-1]) + 1):
            found.setdefault((target, (protocol or "tcp").upper()), target)
    return [(published, target, protocol) for (target, protocol), published in found.items()]


def _probe(service: Service) -> dict[str, Any] | None:
    check = service.healthcheck
    if check is None or check.disable or not check.test:
        return None
    command = ["sh", "-c", check.test[1]] if check.test[0] == "CMD-SHELL" else check.test[1:]
    probe: dict[str, Any] = {"exec": {"command": command}}
    for key, value in (("periodSeconds", check.interval), ("timeoutSeconds", check.timeout),
                       ("initialDelaySeconds", check.start_period)):
        if value is not None:
            probe[key] = max(1, round(value)) if key != "initialDelaySeconds" else round(value)
    if check.retries is not None:
        probe["failureThreshold"] = max(1, check.retries)
    return probe


def _deployment(project: Project, service: Service, name: str, claims: dict[str, str]) -> dict[str, Any]:
    mounts, volumes = [], []
    for index, volume in enumerate(service.volumes):
        if volume.type == "volume" and volume.source:
            source = claims[volume.source]
            volumes.append({"name": source, "persistentVolumeClaim": {"claimName": source}})
        elif volume.type == "tmpfs" or (volume.type == "volume" and not volume.source):
            source = f"{name}-tmp{index}"
            volumes.append({"name": source, "emptyDir": {"medium": "Memory"} if volume.type == "tmpfs" else {}})
        else:
            raise ComposeError(f"service {service.name}: {volume.type} mount {volume.source or volume.target} has no "
                               "Kubernetes equivalent (use a named volume)")
        mounts.append({"name": source, "mountPath": volume.target, **({"readOnly": True} if volume.read_only else {})})
    container: dict[str, Any] = {"name": name, "image": service.image}
    if service.entrypoint:
        container["command"] = service.entrypoint
    if service.command:
        container["args"] = service.command
    if any(v is not None for v in service.environment.values()):
        container["envFrom"] = [{"configMapRef": {"name": f"{name}-env"}}]
    if ports := _ports(service):
        container["ports"] = [{"containerPort": target, "protocol": protocol} for _, target, protocol in ports]
    deploy = service.deploy
    limits = _quantities(deploy.limits) if deploy else {}
    if service.memory_limit is not None:
        limits["memory"] = str(service.memory_limit)
    if service.cpu_limit is not None:
        limits["cpu"] = f"{round(service.cpu_limit * 1000)}m"
    resources = {k: v for k, v in (("limits", limits),
                                   ("requests", _quantities(deploy.reservations) if deploy else {})) if v}
    if resources:
        container["resources"] = resources
    if probe := _probe(service):
        container["livenessProbe"] = probe
    if mounts:
        container["volumeMounts"] = mounts
    for key, value in (("workingDir", service.working_dir), ("tty", service.tty or None),
                       ("stdin", service.stdin_open or None)):
        if value is not None:
            container[key] = value
    pod: dict[str, Any] = {"containers": [container], "restartPolicy": "Always"}
    if volumes:
        pod["volumes"] = volumes
    if service.hostname:
        pod["hostname"] = k8s_name(service.hostname)
    selector = {SERVICE_LABEL: name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, project, **selector),
            "spec": {"replicas": service.replicas, "selector": {"matchLabels": selector},
                     "strategy": {"type": "Recreate" if claims and service.volumes else "RollingUpdate"},
                     "template": {"metadata": {"labels": {PART_OF: k8s_name(project.name), **selector}},
                                  "spec": pod}}}


def convert(project: Project) -> list[dict[str, Any]]:
    """The manifests of ``project`` (module docstring): PVCs first, then per service its ConfigMap, Deployment
    and Service. Raises ComposeError for a service without image, a bind mount, or clashing names."""
    claims = {key: k8s_name(volume.name) for key, volume in project.volumes.items()}
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _meta(claim, project),
         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": DEFAULT_STORAGE}}}}
        for key, claim in claims.items() if not project.volumes[key].external]
    names: dict[str, str] = {}
    for service in project.services.values():
        if not service.image:
            raise ComposeError(f"service {service.name}: Kubernetes needs an image (build and push it first)")
        name = k8s_name(service.name)
        if name in names:
            raise ComposeError(f"services {names[name]} and {service.name} have the same Kubernetes name {name}")
        names[name] = service.name
        environment = {k: v for k, v in service.environment.items() if v is not None}
        if environment:
            objects.append({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": _meta(f"{name}-env", project, **{SERVICE_LABEL: name}), "data": environment})
        objects.append(_deployment(project, service, name, claims))
        if ports := _ports(service):
            objects.append({"apiVersion": "v1", "kind": "Service",
                            "metadata": _meta(name, project, **{SERVICE_LABEL: name}),
                            "spec": {"selector": {SERVICE_LABEL: name}, "ports": [
                                {"name": f"{published}-{protocol.lower()}", "port": published, "targetPort": target,
                                 "protocol": protocol} for published, target, protocol in ports]}})
    return objects


def write_manifests(objects: Sequence[dict[str, Any]], directory: Path | None) -> str:
    """Write one ``<name>-<kind>.yaml`` per object into ``directory`` (created) and return the file names, one
    per line; without a directory, return all of them as one multi-document YAML stream. Raises ComposeError."""
    if directory is None:
        return yaml.safe_dump_all(objects, sort_keys=False)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for obj in objects:
            path = directory / f"{obj['metadata']['name']}-{obj['kind'].lower()}.yaml"
            path.write_text(yaml.safe_dump(obj, sort_keys=False))
            written.append(str(path))
    except OSError as exc:
        raise ComposeError(f"cannot write the manifests to {directory}: {exc}") from exc
    return "".join(f"{path}\n" for path in written)


def apply(objects: Sequence[dict[str, Any]], *, namespace: str = "default") -> list[str]:
    """Create the objects in the current kubeconfig context's cluster (``kubernetes`` client). Returns
    ``kind/name`` per object. Raises ComposeError when there is no kubeconfig, the client is missing or the
    cluster refuses an object."""
    try:
        from kubernetes import client, config, utils
        from kubernetes.config.config_exception import ConfigException
    except ImportError as exc:
        raise ComposeError("--apply needs the kubernetes Python client (pip install kubernetes)") from exc
    try:
        config.load_kube_config()
    except (ConfigException, OSError) as exc:
        raise ComposeError(f"no usable kubeconfig: {exc}") from exc
    api = client.ApiClient()
    created = []
    for obj in objects:
        try:
            utils.create_from_dict(api, obj, namespace=namespace)
        except (utils.FailToCreateError, client.ApiException, OSError) as exc:
            raise ComposeError(f"{obj['kind']}/{obj['metadata']['name']}: {exc}") from exc
        created.append(f"{obj['kind'].lower()}/{obj['metadata']['name']}")
    return created
