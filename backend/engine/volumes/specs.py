"""Mount specifications as dockerd 20.10's Linux parser reads them, with its error messages.

- ``-v``/``HostConfig.Binds`` strings: ``[source:]destination[:mode]``; an absolute source is a bind
  mount, any other source names a volume, no source is an anonymous volume (:func:`parse_bind`);
- ``--mount``/``HostConfig.Mounts`` objects: ``Type`` bind, volume or tmpfs (:func:`parse_mount`);
- ``--volumes-from`` strings: ``container[:ro|rw]`` (:func:`parse_volumes_from`);
- local volume names (:func:`validate_volume_name`).

Every destination is absolute, cleaned (so no ``..`` is left in it) and never ``/``. Every rejection
raises InvalidParameter with Docker's message.
"""

from __future__ import annotations

import enum
import os
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from backend.engine.errors import InvalidParameter

VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
RW_MODES = frozenset({"rw", "ro"})
LABEL_MODES = frozenset({"z", "Z"})
PROPAGATION_MODES = frozenset({"private", "rprivate", "slave", "rslave", "shared", "rshared"})
COPY_MODES = frozenset({"nocopy"})
CONSISTENCY_MODES = frozenset({"consistent", "cached", "delegated", "default"})
DEFAULT_PROPAGATION = "rprivate"
TMPFS_FLAG_OPTIONS = frozenset({"exec", "noexec"})


class MountType(enum.Enum):
    BIND = "bind"
    VOLUME = "volume"
    TMPFS = "tmpfs"


@dataclass(frozen=True)
class MountSpec:
    """One requested mount. ``source`` is the host path of a bind, the volume's name (empty for an
    anonymous volume), empty for tmpfs. ``create_source``: a missing bind source is made as a directory
    (``-v`` semantics). ``tmpfs_data`` is the tmpfs option string (``size=1m,mode=700``)."""

    type: MountType
    destination: str
    source: str = ""
    read_only: bool = False
    mode: str = ""
    propagation: str = ""
    copy_data: bool = True
    non_recursive: bool = False
    create_source: bool = False
    tmpfs_data: str = ""
    volume_labels: dict[str, str] = field(default_factory=dict)
    volume_options: dict[str, str] = field(default_factory=dict)


def _invalid_spec(raw: str) -> str:
    return f"invalid volume specification: '{raw}'"


def _clean(path: str) -> str:
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("/") else cleaned


def _check_destination(path: str) -> str | None:
    """Docker's target checks: the reason it is refused, or None."""
    if _clean(path) == "/":
        return "invalid specification: destination can't be '/'"
    if not path.startswith("/"):
        return f"invalid mount path: '{path}' mount path must be absolute"
    return None


def _mode_counts(mode: str) -> dict[str, int] | None:
    """How many options of each kind ``mode`` holds, or None if one is unknown."""
    counts = {"rw": 0, "label": 0, "propagation": 0, "copy": 0, "consistency": 0}
    for option in mode.split(","):
        kind = ("rw" if option in RW_MODES else "label" if option in LABEL_MODES
                else "propagation" if option in PROPAGATION_MODES else "copy" if option in COPY_MODES
                else "consistency" if option in CONSISTENCY_MODES else None)
        if kind is None:
            return None
        counts[kind] += 1
    return counts


def valid_mode(mode: str) -> bool:
    """dockerd's ``ValidMountMode``: empty, or known options with at most one of each kind."""
    if not mode:
        return True
    counts = _mode_counts(mode)
    return counts is not None and max(counts.values()) <= 1


def _config_error(kind: str, reason: str) -> InvalidParameter:
    return InvalidParameter(f'invalid mount config for type "{kind}": {reason}')


def parse_bind(raw: str) -> MountSpec:
    """A ``-v`` string (also a ``Config.Volumes`` key, which is just a destination). A missing host
    directory is created later, as Docker does for ``-v``. Raises InvalidParameter."""
    parts = raw.split(":", 3)
    if not parts[0] or len(parts) > 3:
        raise InvalidParameter(_invalid_spec(raw))
    mode = ""
    if len(parts) == 1:
        source, destination = "", parts[0]
    elif len(parts) == 2:
        if valid_mode(parts[1]):  # "/path:ro": a destination and a mode, but no volume
            raise InvalidParameter(_invalid_spec(raw))
        source, destination = parts
    else:
        source, destination, mode = parts
    if not valid_mode(mode):
        raise InvalidParameter(f"invalid mode: {mode}")
    options = mode.split(",") if mode else []
    kind = MountType.BIND if source.startswith("/") else MountType.VOLUME
    propagation = next((o for o in options if o in PROPAGATION_MODES), "")
    reason = _check_destination(destination)
    if reason is None and kind is MountType.VOLUME and propagation:
        reason = 'invalid mount config for type "volume": field BindOptions must not be specified'
    if reason is not None:
        if not reason.startswith("invalid mount config"):
            reason = f'invalid mount config for type "{kind.value}": {reason}'
        raise InvalidParameter(f"{_invalid_spec(raw)}: {reason}")
    return MountSpec(
        type=kind, destination=_clean(destination), source=_clean(source) if kind is MountType.BIND else source,
        read_only="ro" in options, mode=mode,
        propagation=(propagation or DEFAULT_PROPAGATION) if kind is MountType.BIND else "",
        copy_data="nocopy" not in options, create_source=kind is MountType.BIND)


def _object(doc: Mapping[str, Any], key: str, kind: str) -> Mapping[str, Any] | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _config_error(kind, f"field {key} must be an object")
    return value


def _string_map(doc: Mapping[str, Any] | None, key: str, kind: str) -> dict[str, str]:
    value = (doc or {}).get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _config_error(kind, f"field {key} must be an object of strings")
    return {str(k): v for k, v in value.items()}


def tmpfs_data(size: int, mode: int, read_only: bool, options: Any = None) -> str:
    """dockerd's ``ConvertTmpfsOptions``: ``ro``, ``mode=<octal>``, ``size=<n>[kmg]`` and the extra
    ``exec``/``noexec`` options. Raises InvalidParameter (without the mount-config prefix)."""
    out = ["ro"] if read_only else []
    if mode:
        out.append(f"mode={mode:o}")
    if size:
        suffix = ""
        for letter, divisor in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
            if size % divisor == 0:
                size, suffix = size // divisor, letter
                break
        out.append(f"size={size}{suffix}")
    for option in options or []:
        if not isinstance(option, list) or not 1 <= len(option) <= 2:
            raise InvalidParameter("invalid option array length")
        if option[0] not in TMPFS_FLAG_OPTIONS:
            raise InvalidParameter(f"invalid option: {option[0]}")
        out.append("=".join(str(o) for o in option))
    return ",".join(out)


def parse_mount(doc: object, exists: Callable[[str], bool] = os.path.exists) -> MountSpec:
    """A ``HostConfig.Mounts`` object. A bind source must exist (``exists`` checks it). Raises
    InvalidParameter with dockerd's ``invalid mount config for type "...": ...`` messages."""
    if not isinstance(doc, dict):
        raise InvalidParameter("Mounts: expected a list of objects")
    kind = doc.get("Type")
    kind_text = str(kind or "")
    target, source = doc.get("Target") or "", doc.get("Source") or ""
    if not isinstance(target, str) or not isinstance(source, str):
        raise _config_error(kind_text, "fields Source and Target must be strings")
    if not target:
        raise _config_error(kind_text, "field Target must not be empty")
    reason = _check_destination(target)
    if reason is not None:
        raise _config_error(kind_text, reason)
    read_only = bool(doc.get("ReadOnly"))
    bind = _object(doc, "BindOptions", kind_text)
    volume = _object(doc, "VolumeOptions", kind_text)
    tmpfs = _object(doc, "TmpfsOptions", kind_text)
    if kind == "bind":
        if not source:
            raise _config_error(kind_text, "field Source must not be empty")
        propagation = str((bind or {}).get("Propagation") or "")
        if propagation and propagation not in PROPAGATION_MODES:
            raise _config_error(kind_text, f"invalid propagation mode: {propagation}")
        if volume is not None:
            raise _config_error(kind_text, "field VolumeOptions must not be specified")
        if not source.startswith("/"):
            raise _config_error(kind_text, f"invalid mount path: '{source}' mount path must be absolute")
        if not exists(source):
            raise _config_error(kind_text, f"bind source path does not exist: {source}")
        return MountSpec(MountType.BIND, _clean(target), _clean(source), read_only,
                         propagation=propagation or DEFAULT_PROPAGATION,
                         non_recursive=bool((bind or {}).get("NonRecursive")))
    if kind == "volume":
        if bind is not None:
            raise _config_error(kind_text, "field BindOptions must not be specified")
        if read_only and not source:
            raise _config_error(kind_text, "must not set ReadOnly mode when using anonymous volumes")
        driver = _object(volume or {}, "DriverConfig", kind_text) or {}
        if driver.get("Name") not in (None, "", "local"):
            raise _config_error(kind_text, f"volume driver {driver.get('Name')!r} is not available (only local)")
        return MountSpec(MountType.VOLUME, _clean(target), source, read_only,
                         copy_data=not (volume or {}).get("NoCopy"),
                         volume_labels=_string_map(volume, "Labels", kind_text),
                         volume_options=_string_map(driver, "Options", kind_text))
    if kind == "tmpfs":
        if bind is not None:
            raise _config_error(kind_text, "field BindOptions must not be specified")
        if source:
            raise _config_error(kind_text, "field Source must not be specified")
        size, mode = (tmpfs or {}).get("SizeBytes") or 0, (tmpfs or {}).get("Mode") or 0
        if not isinstance(size, int) or not isinstance(mode, int) or size < 0 or not 0 <= mode <= 0o7777:
            raise _config_error(kind_text, "invalid tmpfs size or mode")
        try:
            data = tmpfs_data(size, mode, read_only, (tmpfs or {}).get("Options"))
        except InvalidParameter as exc:
            raise _config_error(kind_text, str(exc)) from exc
        return MountSpec(MountType.TMPFS, _clean(target), read_only=read_only, tmpfs_data=data)
    raise _config_error(kind_text, "mount type unknown")


def parse_volumes_from(spec: str) -> tuple[str, str]:
    """``container[:mode]`` -> (container, mode); mode is ``rw`` unless given. Propagation and copy
    modes are refused, as by dockerd. Raises InvalidParameter."""
    if not spec:
        raise InvalidParameter("volumes-from specification cannot be an empty string")
    ref, _, mode = spec.partition(":")
    if not mode:
        return ref, "rw"
    counts = _mode_counts(mode)
    if not valid_mode(mode) or counts is None or counts["propagation"] or counts["copy"]:
        raise InvalidParameter(f"invalid mode: {mode}")
    return ref, mode


def validate_volume_name(name: str) -> str:
    """A local volume name, or InvalidParameter with the local driver's message (no ``create`` prefix)."""
    if len(name) == 1:
        raise InvalidParameter("volume name is too short, names should be at least two alphanumeric characters")
    if not VOLUME_NAME_RE.match(name):
        raise InvalidParameter(f'"{name}" includes invalid characters for a local volume name, only '
                               '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                               "directory, use absolute path")
    return name
