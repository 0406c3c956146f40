"""``compose config`` output: the normalised, interpolated project as YAML, and its service and volume names."""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any

import yaml

from backend.compose.model import Project, Service


def _plain(value: Any) -> Any:
    """Dataclasses, enums and containers as plain YAML data; None, empty and False values left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = ((f.name, _plain(getattr(value, f.name))) for f in dataclasses.fields(value))
        return {k: v for k, v in items if v not in (None, {}, [], False)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def service_data(service: Service) -> dict[str, Any]:
    """One service as plain data (stable: the same service gives the same data, e.g. for a config hash)."""
    data: dict[str, Any] = _plain(service)
    data.pop("name", None)
    return data


def project_yaml(project: Project) -> str:
    """The project as Compose YAML with every value normalised and interpolated."""
    data = {"name": project.name, "services": {n: service_data(s) for n, s in project.services.items()},
            "networks": _plain(project.networks), "volumes": _plain(project.volumes)}
    return yaml.safe_dump({k: v for k, v in data.items() if v}, sort_keys=False, default_flow_style=False)


def service_names(project: Project) -> list[str]:
    """``compose config --services``: the enabled services, in file order."""
    return list(project.services)


def volume_names(project: Project) -> list[str]:
    """``compose config --volumes``: the top-level volume keys."""
    return list(project.volumes)
