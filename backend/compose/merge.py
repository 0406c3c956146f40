"""Compose's merge rules for several ``-f`` files and for ``extends``, on interpolated YAML data.

Mappings merge recursively (lists of ``KEY=VALUE`` and lists of names are turned into mappings first, so a list
in one file merges with a mapping in the other); ``command``, ``entrypoint`` and ``healthcheck.test`` are
replaced; ``ports``, ``volumes``, ``secrets`` and ``configs`` merge by their key (the later file wins); other
sequences (``expose``, ``dns``, ``cap_add``...) are unions in order; scalars are replaced. ``!reset`` removes a
key, ``!override`` replaces the earlier value whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backend.compose.loader import Override, Reset, where
from backend.compose.model import ComposeError

_REPLACED = frozenset({"command", "entrypoint", "test"})
_MAPPING_LISTS = frozenset({"environment", "labels", "args", "sysctls", "annotations"})
_NAME_LISTS = frozenset({"depends_on", "networks"})


def _volume_key(item: Any) -> Any:
    if isinstance(item, dict):
        return item.get("target")
    parts = str(item).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def _port_key(item: Any) -> Any:
    if isinstance(item, dict):
        return (item.get("host_ip"), item.get("target"), item.get("published"), item.get("protocol", "tcp"))
    return str(item)


def _source_key(item: Any) -> Any:
    return item.get("source") if isinstance(item, dict) else item


_KEYED: dict[str, Callable[[Any], Any]] = {"ports": _port_key, "volumes": _volume_key, "secrets": _source_key,
                                           "configs": _source_key}


def as_mapping(value: Any, filename: str, path: tuple[str | int, ...]) -> dict[str, Any]:
    """A ``KEY=VALUE`` list (``KEY`` alone gives None) or a mapping, as a mapping with string keys; scalar values
    become strings (``true``, ``1``). Raises ComposeError naming the item."""
    if isinstance(value, dict):
        return {str(k): v if v is None or isinstance(v, (dict, list, Override, Reset)) else _scalar_text(v)
                for k, v in value.items()}
    if not isinstance(value, list):
        raise ComposeError(f"{where(filename, path)}: must be a mapping or a list of KEY=VALUE strings")
    result: dict[str, Any] = {}
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item or item.startswith("="):
            raise ComposeError(f"{where(filename, (*path, i))}: invalid entry {item!r}; expected KEY=VALUE")
        key, sep, val = item.partition("=")
        result[key] = val if sep else None
    return result


def _names_mapping(value: Any, filename: str, path: tuple[str | int, ...]) -> dict[str, Any]:
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ComposeError(f"{where(filename, path)}: must be a list of names or a mapping")
    if len(set(value)) != len(value):
        raise ComposeError(f"{where(filename, path)}: names must be unique")
    return {v: None for v in value}


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def normalise_service(service: Any, filename: str, name: str) -> dict[str, Any]:
    """A service's raw mapping with list forms of mappings turned into mappings (so files can merge).
    Raises ComposeError."""
    path: tuple[str | int, ...] = ("services", name)
    if service is None:
        return {}
    if not isinstance(service, dict):
        raise ComposeError(f"{where(filename, path)}: a service must be a mapping")
    result = dict(service)
    for key in _MAPPING_LISTS & result.keys():
        result[key] = as_mapping(result[key], filename, (*path, key))
    for key in _NAME_LISTS & result.keys():
        result[key] = _names_mapping(result[key], filename, (*path, key))
    if isinstance(result.get("build"), dict) and "args" in result["build"]:
        result["build"] = {**result["build"], "args": as_mapping(result["build"]["args"], filename,
                                                                 (*path, "build", "args"))}
    if isinstance(result.get("extra_hosts"), dict):
        result["extra_hosts"] = [f"{h}:{ip}" for h, ip in result["extra_hosts"].items()]
    for key in ("env_file", "dns", "dns_search", "tmpfs", "profiles"):
        if isinstance(result.get(key), str):
            result[key] = [result[key]]
    return result


def merge_values(base: Any, override: Any, key: str = "") -> Any:
    """``override`` merged onto ``base`` by Compose's rules for a value under ``key``."""
    if isinstance(override, Override):
        return override.value
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for k, v in override.items():
            if isinstance(v, Reset):
                merged.pop(k, None)
            elif k in merged and k not in _REPLACED:
                merged[k] = merge_values(merged[k], v, k)
            else:
                merged[k] = v.value if isinstance(v, Override) else v
        return merged
    if isinstance(base, list) and isinstance(override, list) and key not in _REPLACED:
        keyed = _KEYED.get(key, repr)
        by_key: dict[Any, Any] = {keyed(item): item for item in base}
        for item in override:
            by_key[keyed(item)] = item
        return list(by_key.values())
    return override


def strip_markers(value: Any) -> Any:
    """``value`` with ``!reset`` keys dropped and ``!override`` unwrapped (a single file's own view)."""
    if isinstance(value, Override):
        return strip_markers(value.value)
    if isinstance(value, dict):
        return {k: strip_markers(v) for k, v in value.items() if not isinstance(v, Reset)}
    if isinstance(value, list):
        return [strip_markers(v) for v in value if not isinstance(v, Reset)]
    return value
