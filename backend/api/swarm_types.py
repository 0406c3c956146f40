"""Swarm wire types: what ``/swarm``, ``/nodes``, ``/services`` and ``/tasks`` answer (Engine API v1.41),
the fields the CLI and the GUI show, and the whole document in ``raw``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _dict(doc: Any, key: str) -> dict[str, Any]:
    value = doc.get(key) if isinstance(doc, dict) else None
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class SwarmInfo:
    """``GET /swarm``: the swarm's ID and the join tokens (only a manager sees them)."""

    id: str
    worker_token: str
    manager_token: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_api(cls, doc: dict[str, Any]) -> SwarmInfo:
        tokens = _dict(doc, "JoinTokens")
        return cls(str(doc.get("ID", "")), str(tokens.get("Worker", "")), str(tokens.get("Manager", "")), doc)


@dataclass(frozen=True)
class Node:
    """One of ``GET /nodes``."""

    id: str
    hostname: str
    role: str
    availability: str
    state: str
    address: str
    leader: bool
    manager_reachability: str
    engine_version: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_api(cls, doc: dict[str, Any]) -> Node:
        spec, status, manager = _dict(doc, "Spec"), _dict(doc, "Status"), _dict(doc, "ManagerStatus")
        description = _dict(doc, "Description")
        return cls(str(doc.get("ID", "")), str(description.get("Hostname", "")), str(spec.get("Role", "")),
                   str(spec.get("Availability", "")), str(status.get("State", "")), str(status.get("Addr", "")),
                   bool(manager.get("Leader")), str(manager.get("Reachability", "")),
                   str(_dict(description, "Engine").get("EngineVersion", "")), doc)


@dataclass(frozen=True)
class Service:
    """One of ``GET /services`` (``status=true``: running and desired task counts)."""

    id: str
    name: str
    image: str
    mode: str
    replicas: int | None
    running: int
    desired: int
    labels: dict[str, str]
    version: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_api(cls, doc: dict[str, Any]) -> Service:
        spec = _dict(doc, "Spec")
        mode_doc = _dict(spec, "Mode")
        mode = "replicated" if "Replicated" in mode_doc else "global" if "Global" in mode_doc else next(
            iter(mode_doc), "")
        replicas = _dict(mode_doc, "Replicated").get("Replicas")
        status = _dict(doc, "ServiceStatus")
        image = str(_dict(_dict(spec, "TaskTemplate"), "ContainerSpec").get("Image", ""))
        labels = spec.get("Labels") if isinstance(spec.get("Labels"), dict) else {}
        return cls(str(doc.get("ID", "")), str(spec.get("Name", "")), image.split("@sha256:")[0], mode,
                   int(replicas) if isinstance(replicas, int) else None, int(status.get("RunningTasks", 0)),
                   int(status.get("DesiredTasks", 0)), {str(k): str(v) for k, v in (labels or {}).items()},
                   int(_dict(doc, "Version").get("Index", 0)), doc)

    @property
    def spec(self) -> dict[str, Any]:
        """The service's spec (what ``POST /services/{id}/update`` takes back)."""
        return _dict(self.raw, "Spec")


@dataclass(frozen=True)
class Task:
    """One of ``GET /tasks``."""

    id: str
    service_id: str
    node_id: str
    slot: int
    desired_state: str
    state: str
    message: str
    error: str
    image: str
    updated_at: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_api(cls, doc: dict[str, Any]) -> Task:
        status = _dict(doc, "Status")
        image = str(_dict(_dict(doc, "Spec"), "ContainerSpec").get("Image", ""))
        return cls(str(doc.get("ID", "")), str(doc.get("ServiceID", "")), str(doc.get("NodeID", "")),
                   int(doc.get("Slot", 0) or 0), str(doc.get("DesiredState", "")), str(status.get("State", "")),
                   str(status.get("Message", "")), str(status.get("Err", "")), image.split("@sha256:")[0],
                   str(doc.get("UpdatedAt", "")), doc)
