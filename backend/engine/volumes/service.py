"""Volumes of the ``local`` driver: ``<root>/<name>/_data`` with the metadata in ``<root>/<name>/volume.json``.

A volume is created with its metadata written atomically (temp file, fsync, rename); a directory without
readable metadata is a broken volume: listed as a warning, refused by ``get``, still removable. With the
driver options ``type``, ``device`` and ``o`` (``--opt type=tmpfs --opt device=tmpfs --opt o=size=64m``,
or ``type=none o=bind device=/path``) the device is mounted on ``_data`` when a container first uses the
volume and unmounted when the volume is removed; a removal never deletes through a mount that is still
there.

Which containers use a volume is the containers layer's knowledge: it comes in as the ``users`` callable
(volume name -> container IDs), so a volume in use is never removed or pruned.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from backend.engine.errors import Conflict, InvalidParameter, NotFound, Unavailable
from backend.engine.events import EventBus
from backend.engine.runtime import syscalls
from backend.engine.runtime.monitor import write_json_atomic
from backend.engine.runtime.rootfs import parse_options
from backend.engine.tree_removal import remove_tree
from backend.engine.volumes.specs import VOLUME_NAME_RE, validate_volume_name

LOCAL = "local"
OPTION_KEYS = frozenset({"type", "device", "o"})
METADATA = "volume.json"
MAX_METADATA = 1 << 20
LIST_FILTERS = frozenset({"name", "driver", "label", "dangling"})
PRUNE_FILTERS = frozenset({"label", "label!", "all"})


@dataclass(frozen=True)
class Volume:
    """A volume of the local driver. ``anonymous``: made for a container's ``-v /path`` or image VOLUME."""

    name: str
    mountpoint: str
    created_at: str
    driver: str = LOCAL
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    anonymous: bool = False

    def has_label(self, want: str) -> bool:
        """Whether it has label ``key`` (any value) or ``key=value`` (Docker's ``label`` filter)."""
        key, sep, value = want.partition("=")
        return key in self.labels and (not sep or self.labels[key] == value)


@dataclass(frozen=True)
class BrokenVolume:
    """A volume directory whose metadata cannot be read."""

    name: str
    reason: str


@dataclass(frozen=True)
class VolumeUsage:
    volume: Volume
    size: int
    ref_count: int


@dataclass(frozen=True)
class PruneReport:
    deleted: list[str]
    reclaimed: int


def _no_users(_: str) -> list[str]:
    return []


def _mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4].encode().decode("unicode_escape") for line in f}


def tree_size(top: str) -> int:
    """Bytes under ``top``, counted without following symlinks. Iterative, so a tree of any depth is walked
    (what lies past PATH_MAX, or cannot be read, is not counted)."""
    total = 0
    pending = [top]
    while pending:
        with contextlib.suppress(OSError), os.scandir(pending.pop()) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    total += entry.stat(follow_symlinks=False).st_size
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
    return total


def _match(patterns: Sequence[str], value: str) -> bool:
    """Docker's ``filters.Match``: equal, or a regular expression found in ``value``."""
    for pattern in patterns:
        try:
            if pattern == value or re.search(pattern, value):
                return True
        except re.error:
            continue
    return False


def _bool_filter(name: str, values: Sequence[str]) -> bool:
    value = values[-1].lower()
    if value not in ("true", "1", "false", "0"):
        raise InvalidParameter(f"invalid filter '{name}={values[-1]}'")
    return value in ("true", "1")


class VolumeService:
    """Volumes under ``root`` (``<data-root>/volumes``)."""

    def __init__(self, root: str, events: EventBus, users: Callable[[str], list[str]] = _no_users) -> None:
        self.root = root
        self.events = events
        self.users = users
        os.makedirs(root, mode=0o701, exist_ok=True)

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def _load(self, name: str) -> Volume | BrokenVolume:
        base = self._dir(name)
        try:
            with open(os.path.join(base, METADATA), "rb") as f:
                doc = json.loads(f.read(MAX_METADATA))
            return Volume(name=name, mountpoint=os.path.join(base, "_data"), created_at=str(doc["CreatedAt"]),
                          labels={str(k): str(v) for k, v in (doc.get("Labels") or {}).items()},
                          options={str(k): str(v) for k, v in (doc.get("Options") or {}).items()},
                          anonymous=bool(doc.get("Anonymous")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            return BrokenVolume(name, f"unreadable metadata: {exc}")

    def scan(self) -> tuple[list[Volume], list[BrokenVolume]]:
        """Every volume (by name) and every broken one."""
        good: list[Volume] = []
        broken: list[BrokenVolume] = []
        with contextlib.suppress(FileNotFoundError):
            for name in sorted(os.listdir(self.root)):
                if VOLUME_NAME_RE.match(name) and os.path.isdir(self._dir(name)):
                    loaded = self._load(name)
                    (good if isinstance(loaded, Volume) else broken).append(loaded)  # type: ignore[arg-type]
        return good, broken

    def get(self, name: str) -> Volume:
        """Raises NotFound ("get X: no such volume"), Unavailable for a broken volume."""
        if not VOLUME_NAME_RE.match(name) or not os.path.isdir(self._dir(name)):
            raise NotFound(f"get {name}: no such volume")
        loaded = self._load(name)
        if isinstance(loaded, BrokenVolume):
            raise Unavailable(f"volume {name} is broken: {loaded.reason}")
        return loaded

    def create(self, name: str | None = None, *, driver: str = LOCAL, labels: Mapping[str, str] | None = None,
               options: Mapping[str, str] | None = None, anonymous: bool = False) -> Volume:
        """``docker volume create``: a new volume, or the existing one of that name. Without a name, a
        random 64-hex one. Raises InvalidParameter (Docker's messages, prefixed ``create <name>:``),
        NotFound for a driver other than ``local``."""
        if driver not in ("", LOCAL):
            raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found')
        name = name or secrets.token_hex(32)
        try:
            validate_volume_name(name)
        except InvalidParameter as exc:
            raise InvalidParameter(f"create {name}: {exc}") from exc
        options = dict(options or {})
        for key in options:
            if key not in OPTION_KEYS:
                raise InvalidParameter(f'create {name}: invalid option key: "{key}"')
        for key in ("type", "device"):
            if options and not options.get(key):
                raise InvalidParameter(f'create {name}: missing required option: "{key}"')
        if os.path.isdir(self._dir(name)):
            return self.get(name)
        base = self._dir(name)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        volume = Volume(name=name, mountpoint=os.path.join(base, "_data"), created_at=created,
                        labels=dict(labels or {}), options=options, anonymous=anonymous)
        try:
            os.makedirs(volume.mountpoint, mode=0o755)
            write_json_atomic(os.path.join(base, METADATA), {
                "CreatedAt": created, "Labels": volume.labels, "Options": volume.options, "Anonymous": anonymous,
            }, durable=True)
        except OSError as exc:
            shutil.rmtree(base, ignore_errors=True)
            raise Unavailable(f"create {name}: {exc.strerror}") from exc
        self.events.emit("volume", "create", name, {"driver": LOCAL})
        return volume

    def list_volumes(self, filters: Mapping[str, Sequence[str]] | None = None) -> tuple[list[Volume], list[str]]:
        """``GET /volumes``: (volumes matching ``filters`` — name, driver, label, dangling —, warnings
        naming broken volumes). Raises InvalidParameter for an unknown or malformed filter."""
        filters = filters or {}
        unknown = set(filters) - LIST_FILTERS
        if unknown:
            raise InvalidParameter(f"invalid filter '{sorted(unknown)[0]}'")
        dangling = _bool_filter("dangling", filters["dangling"]) if filters.get("dangling") else None
        volumes, broken = self.scan()
        out = [v for v in volumes
               if (not filters.get("name") or _match(filters["name"], v.name))
               and (not filters.get("driver") or _match(filters["driver"], v.driver))
               and all(v.has_label(want) for want in filters.get("label", []))
               and (dangling is None or dangling == (not self.users(v.name)))]
        return out, [f"volume {b.name} is broken: {b.reason}" for b in broken]

    def mount_path(self, volume: Volume) -> str:
        """The host path a container mounts: ``_data``, with the volume's device mounted on it first when
        it has one. Raises Unavailable if that mount fails."""
        kind, device = volume.options.get("type"), volume.options.get("device")
        if not kind or not device or volume.mountpoint in _mount_points():
            return volume.mountpoint
        flags, _, data = parse_options([o for o in volume.options.get("o", "").split(",") if o])
        try:
            syscalls.mount(device, volume.mountpoint, None if kind == "none" else kind, flags, data or None)
        except OSError as exc:
            raise Unavailable(f"error while mounting volume '{volume.mountpoint}': failed to mount local volume: "
                              f"mount {device}:{volume.mountpoint}: {exc.strerror}") from exc
        return volume.mountpoint

    def remove(self, name: str, *, force: bool = False) -> None:
        """``docker volume rm``. Raises Conflict ("volume is in use - [ids]"), NotFound (unless ``force``),
        Unavailable if its device cannot be unmounted (nothing is deleted then)."""
        if not VOLUME_NAME_RE.match(name) or not os.path.isdir(self._dir(name)):
            if force:
                return
            raise NotFound(f"get {name}: no such volume")
        users = self.users(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        data = os.path.join(self._dir(name), "_data")
        if data in _mount_points():
            with contextlib.suppress(OSError):
                syscalls.umount2(data, syscalls.MNT_DETACH)
            if data in _mount_points():
                raise Unavailable(f"remove {name}: cannot unmount {data}")
        try:
            remove_tree(self._dir(name))  # iterative: a container may leave a tree deeper than Python's recursion
        except OSError as exc:
            raise Unavailable(f"remove {name}: {exc.strerror}") from exc
        self.events.emit("volume", "destroy", name, {"driver": LOCAL})

    def prune(self, filters: Mapping[str, Sequence[str]] | None = None) -> PruneReport:
        """``docker volume prune``: remove every unused volume carrying all ``label`` filters and none of
        ``label!`` (API 1.41: named ones too). Raises InvalidParameter for an unknown filter."""
        filters = filters or {}
        unknown = set(filters) - PRUNE_FILTERS
        if unknown:
            raise InvalidParameter(f"invalid filter '{sorted(unknown)[0]}'")
        deleted: list[str] = []
        reclaimed = 0
        for volume in self.scan()[0]:
            if not all(volume.has_label(w) for w in filters.get("label", [])):
                continue
            if any(volume.has_label(w) for w in filters.get("label!", [])) or self.users(volume.name):
                continue
            size = tree_size(volume.mountpoint)
            with contextlib.suppress(Conflict, NotFound, Unavailable):
                self.remove(volume.name)
                deleted.append(volume.name)
                reclaimed += size
        self.events.emit("volume", "prune", "", {"reclaimed": str(reclaimed)})
        return PruneReport(deleted, reclaimed)

    def disk_usage(self) -> list[VolumeUsage]:
        """Every volume with its size and how many containers use it (for ``system df``)."""
        return [VolumeUsage(v, tree_size(v.mountpoint), len(self.users(v.name))) for v in self.scan()[0]]
