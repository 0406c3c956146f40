"""A container's mounts: ``Binds``, ``Mounts``, ``Volumes`` (and the image's VOLUMEs) and ``VolumesFrom``
turned into mount points, as dockerd's ``registerMountPoints`` does, and from them the OCI ``mounts``.

Precedence, as in dockerd: ``--volumes-from`` first, then binds and ``--mount`` (a destination given twice
there is refused: "Duplicate mount point"), then anonymous volumes for ``Volumes`` destinations not yet
mounted; a ``HostConfig.Tmpfs`` destination overrides all of them. A named volume that does not exist is
created. A volume mounted where the image has a directory with content starts with a copy of it when the
volume is empty (not for ``nocopy``/``NoCopy``), with the directory's owner and mode.

The mount points are recorded in ``<container dir>/mounts.json`` before any slow work, so a volume is
seen in use from the moment a create claims it. Every destination is cleaned and absolute; the runtime
resolves it inside the root filesystem (``secure_join``), so a symlink in the image never leads a mount
out of the container.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import stat
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from backend.engine.containers.create_request import CreateRequest
from backend.engine.containers.store import ContainerStore
from backend.engine.errors import Conflict, InvalidParameter, NotFound, Unavailable
from backend.engine.runtime.monitor import write_json_atomic
from backend.engine.runtime.rootfs import secure_join
from backend.engine.volumes.service import LOCAL, VolumeService
from backend.engine.volumes.specs import MountSpec, MountType, parse_bind, parse_mount, parse_volumes_from

MOUNTS_FILE = "mounts.json"


@dataclass(frozen=True)
class MountPoint:
    """One mount of a container. ``source`` is the host path (empty for tmpfs); ``name`` the volume's;
    ``anonymous``: a volume made for this container (``docker rm -v`` removes it); ``seed``: copy the
    image's content into the volume if it is empty."""

    type: str
    destination: str
    source: str = ""
    name: str = ""
    rw: bool = True
    mode: str = ""
    propagation: str = ""
    anonymous: bool = False
    non_recursive: bool = False
    tmpfs_data: str = ""
    seed: bool = False

    def oci(self) -> dict[str, object]:
        """The config.json ``mounts`` entry, as dockerd writes it."""
        if self.type == MountType.TMPFS.value:
            options = ["nosuid", "nodev", "noexec", *[o for o in self.tmpfs_data.split(",") if o]]
            return {"destination": self.destination, "type": "tmpfs", "source": "tmpfs", "options": options}
        options = ["bind" if self.non_recursive else "rbind"]
        if not self.rw:
            options.append("ro")
        if self.propagation:
            options.append(self.propagation)
        return {"destination": self.destination, "type": "bind", "source": self.source, "options": options}

    def inspect_json(self) -> dict[str, Any]:
        """An entry of the container inspect ``Mounts`` list."""
        doc: dict[str, Any] = {"Type": self.type}
        if self.name:
            doc["Name"] = self.name
        doc.update({"Source": self.source, "Destination": self.destination})
        if self.type == MountType.VOLUME.value:
            doc["Driver"] = LOCAL
        doc.update({"Mode": self.mode, "RW": self.rw, "Propagation": self.propagation})
        return doc


def _depth(point: MountPoint) -> int:
    return len([p for p in point.destination.split("/") if p])


def copy_tree(source: str, target: str) -> None:
    """Copy the directory ``source`` into the existing directory ``target``: files, directories,
    symlinks (never followed), devices and fifos, with owners, modes and times. Raises OSError."""
    dirs: list[tuple[str, os.stat_result]] = []
    pending = [(source, target)]
    while pending:
        src_dir, dst_dir = pending.pop()
        with os.scandir(src_dir) as entries:
            for entry in entries:
                src, dst = entry.path, os.path.join(dst_dir, entry.name)
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    os.mkdir(dst, 0o700)
                    pending.append((src, dst))
                    dirs.append((dst, st))
                    continue
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(src), dst)
                elif stat.S_ISREG(st.st_mode):
                    shutil.copyfile(src, dst, follow_symlinks=False)
                elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
                    os.mknod(dst, st.st_mode, st.st_rdev)
                else:
                    continue
                _copy_metadata(dst, st)
    for path, st in reversed(dirs):
        _copy_metadata(path, st)


def _copy_metadata(path: str, st: os.stat_result) -> None:
    os.lchown(path, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def seed_volume(rootfs: str, point: MountPoint) -> None:
    """Docker's copy-up: if the image has a directory at the mount point and the volume is empty, copy
    the directory's content, owner and mode into it. Raises Unavailable."""
    source = secure_join(rootfs, point.destination)
    try:
        st = os.lstat(source)
        if not stat.S_ISDIR(st.st_mode) or os.listdir(point.source):
            return
        copy_tree(source, point.source)
        os.chown(point.source, st.st_uid, st.st_gid)
        os.chmod(point.source, stat.S_IMODE(st.st_mode))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise Unavailable(f"copying {point.destination} of the image into volume {point.name}: "
                          f"{exc.strerror}") from exc


class ContainerMounts:
    """Mount points of the containers in ``store``, with volumes from ``volumes`` (None: only binds and
    tmpfs are available)."""

    def __init__(self, store: ContainerStore, volumes: VolumeService | None) -> None:
        self.store = store
        self.volumes = volumes

    def _file(self, container_id: str) -> str:
        return os.path.join(self.store.dir(container_id), MOUNTS_FILE)

    def load(self, container_id: str) -> list[MountPoint]:
        """The container's recorded mount points (none if it has no record or it is unreadable)."""
        try:
            with open(self._file(container_id)) as f:
                return [MountPoint(**doc) for doc in json.load(f)]
        except (OSError, ValueError, TypeError):
            return []

    def users(self, volume_name: str) -> list[str]:
        """IDs of the containers (also ones being created) that mount the volume."""
        ids = [cid for cid in sorted(os.listdir(self.store.root)) if len(cid) == 64]
        return [cid for cid in ids if any(p.name == volume_name for p in self.load(cid))]

    def inspect(self, container_id: str) -> list[dict[str, Any]]:
        """The inspect ``Mounts`` list."""
        return [p.inspect_json() for p in self.load(container_id)]

    async def prepare(self, container_id: str, req: CreateRequest, image_config: Mapping[str, Any],
                      rootfs: str) -> list[dict[str, object]]:
        """Resolve the request's mounts (creating volumes), record them, seed new volumes from the image at
        ``rootfs``; returns the OCI mounts, parents before children. On failure the anonymous volumes it
        made are removed again. Raises InvalidParameter (Docker's messages), NotFound (``--volumes-from``
        of no container), Unavailable."""
        made: list[str] = []
        try:
            points = self._resolve(req, image_config, rootfs, made)
            write_json_atomic(self._file(container_id), [asdict(p) for p in points])
            for point in points:
                if point.seed:
                    await asyncio.to_thread(seed_volume, rootfs, point)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self._file(container_id))
            self._remove_volumes(made)
            raise
        return [p.oci() for p in sorted(points, key=_depth)]

    def release(self, container_id: str, *, remove_anonymous: bool) -> None:
        """Forget the container's mount points; with ``remove_anonymous`` (``rm -v``, ``--rm``) also remove
        its anonymous volumes that no other container uses."""
        points = self.load(container_id)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._file(container_id))
        if remove_anonymous:
            self._remove_volumes([p.name for p in points if p.anonymous])

    def _remove_volumes(self, names: list[str]) -> None:
        """Remove these volumes, except the ones another container uses."""
        for name in names:
            if self.volumes is not None:
                with contextlib.suppress(Conflict, NotFound, Unavailable):
                    self.volumes.remove(name)

    def _resolve(self, req: CreateRequest, image_config: Mapping[str, Any], rootfs: str,
                 made: list[str]) -> list[MountPoint]:
        """The mount points; the names of anonymous volumes made are appended to ``made`` as they are."""
        by_destination: dict[str, MountPoint] = {}
        for source in req.volumes_from:
            ref, mode = parse_volumes_from(source)
            for point in self.load(self.store.get(ref).id):
                by_destination[point.destination] = MountPoint(**{
                    **asdict(point), "rw": point.rw and "ro" not in mode.split(","), "seed": False})
        explicit: set[str] = set()
        specs = [parse_bind(raw) for raw in req.binds] + [parse_mount(doc) for doc in req.mounts]
        for spec in specs:
            if spec.destination in explicit:
                raise InvalidParameter(f"Duplicate mount point: {spec.destination}")
            explicit.add(spec.destination)
            if spec.destination not in req.tmpfs:
                by_destination[spec.destination] = self._point(spec, made)
        image_volumes = (image_config.get("config") or {}).get("Volumes") or {}
        for raw in [*req.volumes, *image_volumes]:
            spec = parse_bind(str(raw))
            if spec.destination in by_destination or spec.destination in req.tmpfs:
                continue
            if os.path.isfile(secure_join(rootfs, spec.destination)):
                raise InvalidParameter(f"cannot mount volume over existing file, file exists {spec.destination}")
            by_destination[spec.destination] = self._point(spec, made)
        return [p for d, p in by_destination.items() if d not in req.tmpfs]

    def _point(self, spec: MountSpec, made: list[str]) -> MountPoint:
        """The mount point of one spec; an anonymous volume's name goes to ``made`` as soon as it exists."""
        if spec.type is MountType.TMPFS:
            return MountPoint(spec.type.value, spec.destination, rw=not spec.read_only, tmpfs_data=spec.tmpfs_data)
        if spec.type is MountType.BIND:
            if spec.create_source and not os.path.exists(spec.source):
                try:
                    os.makedirs(spec.source, mode=0o755)
                except OSError as exc:
                    raise InvalidParameter(f"error while creating mount source path '{spec.source}': "
                                           f"{exc.strerror}") from exc
            return MountPoint(spec.type.value, spec.destination, spec.source, rw=not spec.read_only, mode=spec.mode,
                              propagation=spec.propagation, non_recursive=spec.non_recursive)
        if self.volumes is None:
            raise Unavailable("volumes are not available in this engine")
        volume = self.volumes.create(spec.source or None, labels=spec.volume_labels, options=spec.volume_options,
                                     anonymous=not spec.source)
        if volume.anonymous:
            made.append(volume.name)
        return MountPoint(spec.type.value, spec.destination, self.volumes.mount_path(volume), volume.name,
                          rw=not spec.read_only, mode=spec.mode, anonymous=not spec.source, seed=spec.copy_data)
