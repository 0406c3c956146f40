"""Control groups for berth-runtime: validate OCI ``linux.resources``, create, fill, freeze, kill, remove.

Both kernel interfaces are supported:

* **v1** (legacy or hybrid): ``/sys/fs/cgroup`` is a tmpfs holding one mount per hierarchy (``cpu``,
  ``memory``, ...). A container's cgroup is one directory per hierarchy it needs; only the hierarchies of
  :data:`V1_CONTROLLERS` are used (named ones such as ``name=systemd`` and the hybrid ``unified`` cgroup2
  mount are left alone).
* **v2** (unified): ``/sys/fs/cgroup`` is a cgroup2 mount and a container's cgroup is one directory.
  Device rules need an eBPF program on v2; this module does not attach one and **ignores device rules on
  v2** (the runtime must say so or enforce devices otherwise). ``memory.swappiness`` has no v2 file and is
  ignored there too.

Everything is plain file I/O on cgroupfs (no systemd, no cgexec). Nothing is cached between calls and
there is no module-level state: :func:`open_cgroup` maps a path and creates nothing;
:meth:`Cgroup.create` makes the directories and writes the limits.

Errors are the engine's taxonomy (:mod:`backend.engine.errors`); every ``OSError`` is wrapped where it
is caught, with ``raise ... from exc``:

* :class:`~backend.engine.errors.InvalidParameter` - a malformed ``linux.resources`` or cgroups path, or
  a value the kernel refused (``EINVAL``, ``ERANGE``, ``EBUSY``, ``EPERM`` on a limit file).
* :class:`~backend.engine.errors.Unavailable` - a controller, control file or cgroup mount is missing, or
  cgroupfs failed otherwise.
* :class:`~backend.engine.errors.NotFound` - the cgroup (or a pid being added) does not exist.
* :class:`~backend.engine.errors.Conflict` - :meth:`Cgroup.destroy` timed out on a busy cgroup.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from backend.engine.errors import Conflict, EngineError, InvalidParameter, NotFound, Unavailable

DEFAULT_MOUNT_ROOT = "/sys/fs/cgroup"
"""Where cgroupfs is mounted on every mainstream distribution."""

DEFAULT_PARENT = "/berth-runtime"
"""Parent of a container's cgroup when the config gives no ``cgroupsPath``."""

V1_CONTROLLERS: tuple[str, ...] = (
    "cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "devices", "blkio")
"""The v1 hierarchies a container cgroup is made in (those that are mounted); nothing else is touched."""

# A hierarchy without resource controllers that a container is placed in (as runc does) so that the
# host's tools see it. Unlike runc, a hybrid host's cgroup2 "unified" is left out: it holds no limits,
# and moving a process into a cgroup2 costs an RCU grace period (about 6 ms per container here).
V1_TRACKING: tuple[str, ...] = ("systemd",)
V2_CONTROLLERS: tuple[str, ...] = ("cpu", "cpuset", "io", "memory", "pids")
"""The v2 controllers enabled in the ancestors' ``cgroup.subtree_control`` when the kernel offers them."""

CGROUP2_SUPER_MAGIC = 0x63677270

CPU_PERIOD_MIN = 1_000
CPU_PERIOD_MAX = 1_000_000
CPU_QUOTA_MIN = 1_000
CPU_SHARES_MIN = 2
CPU_SHARES_MAX = 262_144
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1

_FREEZE_TIMEOUT = 5.0
_CPUSET_LIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_DEVICE_TYPES = frozenset({"a", "b", "c"})


# --------------------------------------------------------------------------------------------------------
# Resources


@dataclass(frozen=True)
class DeviceRule:
    """One OCI ``linux.resources.devices`` entry.

    ``type`` is ``"a"`` (all), ``"b"`` or ``"c"``; ``major``/``minor`` ``None`` mean any (``*``);
    ``access`` is a non-empty combination of ``r``, ``w`` and ``m``.
    """

    allow: bool
    type: str
    major: int | None
    minor: int | None
    access: str

    def v1_rule(self) -> str:
        """The rule as ``devices.allow``/``devices.deny`` take it, e.g. ``"c 1:3 rwm"`` or ``"a"``."""
        if self.type == "a":
            return "a"
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"


@dataclass(frozen=True)
class CgroupResources:
    """Validated limits. ``None`` means "not set" (the kernel default of a new cgroup is kept).

    ``-1`` means unlimited for ``memory_limit``, ``memory_swap``, ``cpu_quota`` and ``pids_limit``.
    ``memory_swap`` is memory+swap as in OCI and, when positive, is at least a positive ``memory_limit``.
    """

    memory_limit: int | None = None
    memory_reservation: int | None = None
    memory_swap: int | None = None
    memory_swappiness: int | None = None
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids_limit: int | None = None
    devices: tuple[DeviceRule, ...] = ()

    def controllers_needed(self) -> frozenset[str]:
        """Controllers whose files these resources write (device rules count as ``devices``)."""
        needed: set[str] = set()
        if any(v is not None for v in (self.memory_limit, self.memory_reservation, self.memory_swap,
                                       self.memory_swappiness)):
            needed.add("memory")
        if any(v is not None for v in (self.cpu_shares, self.cpu_quota, self.cpu_period)):
            needed.add("cpu")
        if self.cpuset_cpus is not None or self.cpuset_mems is not None:
            needed.add("cpuset")
        if self.pids_limit is not None:
            needed.add("pids")
        if self.devices:
            needed.add("devices")
        return frozenset(needed)


def _section(resources: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = resources.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidParameter(f"linux.resources.{key} must be an object, got {type(value).__name__}")
    return value


def _integer(section: Mapping[str, object], key: str, where: str) -> int | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"{where}.{key} must be an integer, got {type(value).__name__}")
    return value


def _int64(section: Mapping[str, object], key: str, where: str, *, unlimited: bool) -> int | None:
    """An int64 field; 0 is "not set" (as runc reads it); -1 is kept when ``unlimited``."""
    value = _integer(section, key, where)
    if value is None or value == 0:
        return None
    if value > _INT64_MAX:
        raise InvalidParameter(f"{where}.{key} is out of range: {value}")
    if value == -1 and unlimited:
        return -1
    if value < 0:
        allowed = " (only -1, unlimited, is allowed)" if unlimited else ""
        raise InvalidParameter(f"{where}.{key} must not be negative{allowed}: {value}")
    return value


def _uint64(section: Mapping[str, object], key: str, where: str) -> int | None:
    """A uint64 field; 0 is "not set"."""
    value = _integer(section, key, where)
    if value is None or value == 0:
        return None
    if value < 0:
        raise InvalidParameter(f"{where}.{key} must not be negative: {value}")
    if value > _UINT64_MAX:
        raise InvalidParameter(f"{where}.{key} is out of range: {value}")
    return value


def _cpuset(section: Mapping[str, object], key: str, where: str) -> str | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidParameter(f"{where}.{key} must be a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        return None
    if not _CPUSET_LIST.match(text):
        raise InvalidParameter(f"{where}.{key} is not a list like \"0-2,4\": {value!r}")
    for part in text.split(","):
        low, _, high = part.partition("-")
        if high and int(high) < int(low):
            raise InvalidParameter(f"{where}.{key} has a descending range {part!r}: {value!r}")
    return text


def _device_rule(entry: object, index: int) -> DeviceRule:
    where = f"linux.resources.devices[{index}]"
    if not isinstance(entry, dict):
        raise InvalidParameter(f"{where} must be an object, got {type(entry).__name__}")
    allow = entry.get("allow")
    if not isinstance(allow, bool):
        raise InvalidParameter(f"{where}.allow must be a boolean")
    dev_type = entry.get("type")
    if dev_type is None or dev_type == "":
        dev_type = "a"
    if not isinstance(dev_type, str) or dev_type not in _DEVICE_TYPES:
        raise InvalidParameter(f"{where}.type must be one of \"a\", \"b\", \"c\": {dev_type!r}")
    numbers: list[int | None] = []
    for key in ("major", "minor"):
        number = _integer(entry, key, where)
        if number is not None and number < -1:
            raise InvalidParameter(f"{where}.{key} must not be negative: {number}")
        if number is not None and number > 0xFFFFFFFF:
            raise InvalidParameter(f"{where}.{key} is out of range: {number}")
        numbers.append(None if number in (None, -1) else number)
    access = entry.get("access")
    if access is None or access == "":
        access = "rwm"
    if (not isinstance(access, str) or not set(access) <= set("rwm")
            or len(set(access)) != len(access)):
        raise InvalidParameter(f"{where}.access must combine \"r\", \"w\" and \"m\": {access!r}")
    return DeviceRule(allow=allow, type=dev_type, major=numbers[0], minor=numbers[1], access=access)


def parse_resources(obj: object) -> CgroupResources:
    """Parse and validate OCI config.json ``linux.resources`` (runtime-spec config-linux.md).

    Reads ``memory{limit,reservation,swap,swappiness}``, ``cpu{shares,quota,period,cpus,mems}``,
    ``pids{limit}`` and ``devices[]``; unknown keys (``blockIO``, ``hugepageLimits``, ``kernel``, ...) are
    ignored. ``None`` (no ``linux.resources``) gives empty resources. As runc does, a numeric 0 and an
    empty string mean "not set", and a reservation of -1 is "no reservation" (``None``). A swappiness of
    -1 or 2**64-1 (what int64 -1 becomes in Go's uint64) is "not set" too.

    Raises InvalidParameter, naming the field, for: a non-object section, a non-integer number (booleans
    included), a negative value other than -1 where -1 means unlimited (limit, swap, quota, pids.limit),
    swappiness over 100, a quota under 1000 µs, a period outside 1000..1000000 µs, a cpuset list not like
    ``"0-2,4"``, swap set without a positive memory limit or below it, and malformed device rules.
    """
    if obj is None:
        return CgroupResources()
    if not isinstance(obj, dict):
        raise InvalidParameter(f"linux.resources must be an object, got {type(obj).__name__}")

    memory = _section(obj, "memory")
    where = "linux.resources.memory"
    limit = _int64(memory, "limit", where, unlimited=True)
    reservation = _int64(memory, "reservation", where, unlimited=True)
    if reservation == -1:
        reservation = None
    swap = _int64(memory, "swap", where, unlimited=True)
    swappiness = _integer(memory, "swappiness", where)
    if swappiness in (-1, _UINT64_MAX):
        swappiness = None
    if swappiness is not None and not 0 <= swappiness <= 100:
        raise InvalidParameter(f"{where}.swappiness must be between 0 and 100: {swappiness}")
    if swap is not None and swap != -1:
        if limit is None or limit == -1:
            raise InvalidParameter(f"{where}.swap ({swap}) needs a positive {where}.limit")
        if swap < limit:
            raise InvalidParameter(
                f"{where}.swap ({swap}) must be at least {where}.limit ({limit}): it is memory+swap")

    cpu = _section(obj, "cpu")
    where = "linux.resources.cpu"
    shares = _uint64(cpu, "shares", where)
    quota = _int64(cpu, "quota", where, unlimited=True)
    if quota is not None and quota != -1 and quota < CPU_QUOTA_MIN:
        raise InvalidParameter(f"{where}.quota must be -1 or at least {CPU_QUOTA_MIN} µs: {quota}")
    period = _uint64(cpu, "period", where)
    if period is not None and not CPU_PERIOD_MIN <= period <= CPU_PERIOD_MAX:
        raise InvalidParameter(
            f"{where}.period must be between {CPU_PERIOD_MIN} and {CPU_PERIOD_MAX} µs: {period}")
    cpus = _cpuset(cpu, "cpus", where)
    mems = _cpuset(cpu, "mems", where)

    pids = _section(obj, "pids")
    pids_limit = _int64(pids, "limit", "linux.resources.pids", unlimited=True)

    raw_devices = obj.get("devices")
    if raw_devices is None:
        raw_devices = []
    if not isinstance(raw_devices, list):
        raise InvalidParameter(f"linux.resources.devices must be an array, got {type(raw_devices).__name__}")
    devices = tuple(_device_rule(entry, i) for i, entry in enumerate(raw_devices))

    return CgroupResources(
        memory_limit=limit, memory_reservation=reservation, memory_swap=swap,
        memory_swappiness=swappiness, cpu_shares=shares, cpu_quota=quota, cpu_period=period,
        cpuset_cpus=cpus, cpuset_mems=mems, pids_limit=pids_limit, devices=devices,
    )


def cpu_weight_from_shares(shares: int) -> int:
    """v1 ``cpu.shares`` to v2 ``cpu.weight`` as runc converts it (shares clamped to 2..262144)."""
    shares = min(max(shares, CPU_SHARES_MIN), CPU_SHARES_MAX)
    return 1 + ((shares - 2) * 9999) // 262142


# --------------------------------------------------------------------------------------------------------
# Low-level cgroupfs I/O


def _read(path: str) -> str:
    """The whole file; raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks: list[bytes] = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def _write(path: str, value: str) -> None:
    """One write(2) of ``value``; raises OSError (with the path as filename)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    finally:
        os.close(fd)


_REJECTED = frozenset({errno.EINVAL, errno.ERANGE, errno.EBUSY, errno.EPERM, errno.EOVERFLOW, errno.ENOSPC})


def _set(path: str, value: str, *, optional: bool = False) -> None:
    """Write one limit. ``optional``: a missing file is fine (e.g. no swap accounting).

    Raises InvalidParameter if the kernel refused the value, Unavailable if the file is missing or the
    write failed otherwise.
    """
    try:
        _write(path, value)
    except FileNotFoundError as exc:
        if optional:
            return
        raise Unavailable(f"cgroup file {path} does not exist: controller not available") from exc
    except OSError as exc:
        if exc.errno in _REJECTED:
            raise InvalidParameter(f"the kernel refused {value!r} for {path}: {exc.strerror}") from exc
        raise Unavailable(f"cannot write {value!r} to {path}: {exc.strerror}") from exc


def _keyed_value(text: str, key: str) -> int | None:
    """The N of a ``key N`` line in a flat-keyed file (memory.events, memory.oom_control...)."""
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return None


def _procs_in_tree(top: str, into: set[int]) -> None:
    """Add the pids of ``top``'s cgroup.procs and its sub-cgroups' to ``into``; vanished dirs are skipped."""
    try:
        text = _read(os.path.join(top, "cgroup.procs"))
        entries = list(os.scandir(top))
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return
        raise Unavailable(f"cannot list processes of cgroup {top}: {exc.strerror}") from exc
    into.update(int(line) for line in text.split())
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _procs_in_tree(entry.path, into)


def _remove_tree(top: str, deadline: float) -> None:
    """rmdir ``top`` and its sub-cgroups deepest first, retrying EBUSY until ``deadline``."""
    try:
        entries = list(os.scandir(top))
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise Unavailable(f"cannot list cgroup {top}: {exc.strerror}") from exc
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _remove_tree(entry.path, deadline)
    pause = 0.001
    while True:
        try:
            os.rmdir(top)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise Unavailable(f"cannot remove cgroup {top}: {exc.strerror}") from exc
            if time.monotonic() >= deadline:
                raise Conflict(f"cannot remove cgroup {top}: still in use (processes left?)") from exc
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _validated_abs(path: str, what: str) -> str:
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        raise InvalidParameter(f"{what} must be an absolute path: {path!r}")
    if ".." in path.split("/") or os.path.normpath(path) != path:
        raise InvalidParameter(f"{what} must be a normalized path: {path!r}")
    return path


# --------------------------------------------------------------------------------------------------------
# Mount discovery


@dataclass(frozen=True)
class _Mount:
    mountpoint: str
    fstype: str
    super_options: tuple[str, ...]


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _parse_mountinfo(text: str) -> list[_Mount]:
    """Parse /proc/self/mountinfo (proc(5)); mount points have their ``\\040``-style escapes decoded."""
    mounts: list[_Mount] = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 4:
            continue
        mountpoint = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
        mounts.append(_Mount(mountpoint, fields[sep + 1], tuple(fields[sep + 3].split(","))))
    return mounts


def _read_mountinfo() -> list[_Mount]:
    try:
        return _parse_mountinfo(_read("/proc/self/mountinfo"))
    except OSError as exc:
        raise Unavailable(f"cannot read /proc/self/mountinfo: {exc.strerror}") from exc


def _version_from_mounts(root: str, mounts: list[_Mount]) -> int:
    best: _Mount | None = None
    for mount in mounts:  # the longest mount point containing root; later lines are mounted on top
        mp = mount.mountpoint
        if (mp == root or mp == "/" or root.startswith(mp + "/")) and (
                best is None or len(mp) >= len(best.mountpoint)):
            best = mount
    if best is not None and best.fstype == "cgroup2":
        return 2
    if _v1_hierarchies(root, mounts):
        return 1
    raise Unavailable(f"no cgroup filesystem is mounted at {root}")


def _v1_hierarchies(root: str, mounts: list[_Mount]) -> dict[str, str]:
    """Controller -> mount point, for the v1 hierarchies of V1_CONTROLLERS mounted directly in ``root``,
    plus the tracking-only hierarchy of V1_TRACKING (``name=systemd``)."""
    found: dict[str, str] = {}
    for mount in mounts:
        if os.path.dirname(mount.mountpoint) != root:
            continue
        if mount.fstype != "cgroup":
            continue
        for option in mount.super_options:
            if option in V1_CONTROLLERS:
                found[option] = mount.mountpoint
            elif option == "name=systemd":
                found["systemd"] = mount.mountpoint
    if not any(name in found for name in V1_CONTROLLERS):
        return {}
    return {name: found[name] for name in (*V1_CONTROLLERS, *V1_TRACKING) if name in found}


def cgroup_version(mount_root: str = DEFAULT_MOUNT_ROOT) -> int:
    """2 if ``mount_root`` is (inside) a cgroup2 mount, 1 if v1 hierarchies are mounted in it.

    Hybrid systems (v1 controllers plus an empty cgroup2 at ``unified``) are 1. Decided from
    /proc/self/mountinfo (statvfs has no filesystem magic). Raises Unavailable if neither holds.
    """
    return _version_from_mounts(os.path.realpath(mount_root), _read_mountinfo())


# --------------------------------------------------------------------------------------------------------
# Path mapping


def _systemd_path(cgroups_path: str) -> str:
    """``"slice:prefix:name"`` -> ``"/<expanded slice>/<prefix>-<name>.scope"`` (no systemd calls)."""
    slice_name, prefix, name = cgroups_path.split(":")
    if not name or any("/" in part for part in (slice_name, prefix, name)):
        raise InvalidParameter(f"invalid systemd cgroupsPath {cgroups_path!r}: want \"slice:prefix:name\"")
    if not slice_name:
        slice_name = "system.slice"
    parts: list[str] = []
    if slice_name != "-.slice":  # "-.slice" is the root slice
        stem = slice_name.removesuffix(".slice")
        if (stem == slice_name or not stem or "--" in stem or stem.startswith("-")
                or stem.endswith("-")):
            raise InvalidParameter(f"invalid slice {slice_name!r} in cgroupsPath: want \"a-b.slice\"")
        words = stem.split("-")
        parts = ["-".join(words[: i + 1]) + ".slice" for i in range(len(words))]
    unit = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
    if name.endswith(".slice"):
        unit = name
    return "/" + "/".join([*parts, unit])


def resolve_cgroups_path(cgroups_path: str, container_id: str) -> str:
    """The cgroup's path relative to a hierarchy root, normalized, starting with ``/``.

    * ``""`` -> ``"/berth-runtime/<id>"``.
    * ``"/a/b"`` -> ``"/a/b"``: absolute paths are under the hierarchy root (cgroup namespaces aside).
    * ``"a/b"`` -> ``"/a/b"``: relative paths are taken relative to the hierarchy root as well, not to
      the runtime's own cgroup (unlike runc), so the result does not depend on who runs the runtime.
    * ``"slice:prefix:name"`` (no ``/`` anywhere, exactly two colons) -> systemd's layout, e.g.
      ``"system.slice:berth:abc"`` -> ``"/system.slice/berth-abc.scope"``; a dashed slice nests
      (``"a-b.slice"`` -> ``"/a.slice/a-b.slice"``).

    Raises InvalidParameter for ``..`` components, NUL bytes, a path naming the root itself, or a
    container id that is empty or not a single path component.
    """
    if not isinstance(cgroups_path, str) or "\0" in cgroups_path:
        raise InvalidParameter(f"invalid cgroupsPath {cgroups_path!r}")
    if not cgroups_path:
        if not container_id or "/" in container_id or container_id in (".", "..") or "\0" in container_id:
            raise InvalidParameter(f"invalid container id for a cgroup name: {container_id!r}")
        return f"{DEFAULT_PARENT}/{container_id}"
    if "/" not in cgroups_path and cgroups_path.count(":") == 2:
        return _systemd_path(cgroups_path)
    parts = [part for part in cgroups_path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidParameter(f"cgroupsPath must not contain \"..\": {cgroups_path!r}")
    if not parts:
        raise InvalidParameter(f"cgroupsPath must not be the hierarchy root: {cgroups_path!r}")
    return "/" + "/".join(parts)


# --------------------------------------------------------------------------------------------------------
# Cgroups


class Cgroup(ABC):
    """One container's cgroup: a directory per v1 hierarchy, or one v2 directory.

    Obtain with :func:`open_cgroup` (maps a path, creates nothing) or :func:`restore_cgroup`. Methods
    other than :meth:`create` expect the directories to exist; querying a missing cgroup raises NotFound
    except where noted (``pids`` gives ``[]``, ``kill_all`` does nothing, ``destroy`` is a no-op,
    ``oom_kill_count`` is 0, ``memory_usage`` is ``None``).
    """

    version: int

    @abstractmethod
    def create(self, resources: CgroupResources) -> None:
        """Make the directories and write ``resources``; see the subclasses for the files written.

        An existing directory is reused (limits are written into it). On any failure every directory
        this call made is removed again, then InvalidParameter (value refused by the kernel), Unavailable
        (controller or file missing, cgroupfs error) is raised.
        """

    @abstractmethod
    def add_process(self, pid: int) -> None:
        """Move ``pid`` (all its threads) into the cgroup in every hierarchy.

        Raises NotFound if the process does not exist (ESRCH) or the cgroup is missing, Unavailable
        otherwise. On v1 a failure part-way leaves the process in the hierarchies already written.
        """

    @abstractmethod
    def enter_current_thread(self) -> None:
        """Move the calling thread into the cgroup: for the runtime's child between fork and exec.

        v1 writes ``0`` to every hierarchy's ``tasks``, which moves only the calling thread, so the
        caller must be single-threaded (a freshly forked child is). That is much cheaper than
        :meth:`add_process`: the kernel takes its global threadgroup lock (which waits for an RCU grace
        period, 5-10 ms) when moving another process, but not when a thread moves itself. v2 writes ``0``
        to ``cgroup.procs`` (the whole process; the lock is taken anyway). Raises NotFound if the cgroup
        is missing, Unavailable otherwise.
        """

    @abstractmethod
    def freeze(self) -> None:
        """Freeze every process and return once the kernel reports the cgroup frozen.

        Raises Unavailable (after thawing again) if it is not frozen within a few seconds, or if there is
        no freezer; NotFound if the cgroup is missing.
        """

    @abstractmethod
    def thaw(self) -> None:
        """Let frozen processes run again. Raises NotFound / Unavailable as :meth:`freeze`."""

    @abstractmethod
    def is_frozen(self) -> bool:
        """Whether the cgroup is completely frozen (a freeze in progress is not frozen)."""

    @abstractmethod
    def oom_kill_count(self) -> int:
        """How many processes the OOM killer killed in this cgroup (0 without a memory controller)."""

    @abstractmethod
    def memory_usage(self) -> int | None:
        """Current memory use in bytes (v1 ``memory.usage_in_bytes``, v2 ``memory.current``), or ``None``."""

    @abstractmethod
    def paths(self) -> dict[str, str]:
        """Controller name (``""`` on v2) -> absolute directory; :func:`restore_cgroup` takes it back."""

    def _dirs(self) -> list[str]:
        """The distinct directories, in a stable order (co-mounted v1 controllers share one)."""
        return _unique(self.paths().values())

    def exists(self) -> bool:
        """Whether any of the cgroup's directories exists."""
        return any(os.path.isdir(path) for path in self._dirs())

    def pids(self) -> list[int]:
        """Sorted pids in the cgroup and its sub-cgroups, over every hierarchy; ``[]`` if it is missing."""
        found: set[int] = set()
        for path in self._dirs():
            _procs_in_tree(path, found)
        return sorted(found)

    def _can_freeze(self) -> bool:
        return True

    def kill_all(self, sig: int) -> None:
        """Send ``sig`` to every process in the cgroup (and sub-cgroups).

        The cgroup is frozen while the pids are listed and signalled so that forks cannot escape
        (skipped if there is no freezer or freezing fails). It is left frozen afterwards only if it was
        frozen before and ``sig`` is not SIGKILL. Vanished processes are ignored; a missing cgroup is a
        no-op. Raises Unavailable if a signal cannot be sent.
        """
        if not self.exists():
            return
        was_frozen = self._can_freeze() and self.is_frozen()
        froze = False
        if self._can_freeze() and not was_frozen:
            try:
                self.freeze()
                froze = True
            except EngineError:
                froze = False
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
                except OSError as exc:
                    raise Unavailable(f"cannot signal process {pid}: {exc.strerror}") from exc
        finally:
            if froze or (was_frozen and sig == signal.SIGKILL):
                self.thaw()

    def destroy(self, timeout: float = 2.0) -> None:
        """Remove the cgroup's directories and sub-cgroups, deepest first. Ancestors are left alone.

        Idempotent: missing directories are fine. rmdir is retried on EBUSY (processes still exiting)
        until ``timeout`` seconds have passed, then Conflict is raised; other failures raise Unavailable.
        Processes are not killed: call :meth:`kill_all` first.
        """
        deadline = time.monotonic() + timeout
        for path in self._dirs():
            _remove_tree(path, deadline)

    def _missing(self, path: str, exc: OSError, what: str) -> EngineError:
        """NotFound if the cgroup directory is gone, Unavailable if only the file ``what`` needs is."""
        if not os.path.isdir(os.path.dirname(path)):
            return NotFound(f"cgroup {os.path.dirname(path)} does not exist")
        return Unavailable(f"{what}: {path}: {exc.strerror}")

    @staticmethod
    def _enter(procs_file: str, pid: int) -> None:
        try:
            _write(procs_file, str(pid))
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                raise NotFound(f"process {pid} does not exist") from exc
            if exc.errno == errno.ENOENT:
                raise NotFound(f"cgroup {os.path.dirname(procs_file)} does not exist") from exc
            raise Unavailable(f"cannot add process {pid} to {procs_file}: {exc.strerror}") from exc

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.paths()!r})"


def _make_dirs(path: str, root: str, created: list[str]) -> bool:
    """mkdir ``path`` and missing ancestors below ``root`` (which must exist); appends what it made.

    Returns whether ``path`` itself was made. Raises OSError.
    """
    if path == root:
        return False
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        return False
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if parent == root or not parent.startswith(root + "/"):
            raise
        _make_dirs(parent, root, created)
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            return False
    created.append(path)
    return True


def _undo(created: list[str]) -> None:
    for path in reversed(created):
        try:
            os.rmdir(path)
        except OSError:
            pass


def _hierarchy_root(path: str, version: int) -> str:
    """The mount point above ``path``: top of its chain of cgroup dirs (v2: the one without cgroup.type)."""
    current = path
    while True:
        parent = os.path.dirname(current)
        if parent == current:
            return current
        if version == 2:
            if os.path.isdir(current) and not os.path.exists(os.path.join(current, "cgroup.type")):
                return current
        elif os.path.isdir(parent) and not os.path.exists(os.path.join(parent, "cgroup.procs")):
            return current
        current = parent


class V1Cgroup(Cgroup):
    """A cgroup in the v1 hierarchies: one directory per mounted controller of :data:`V1_CONTROLLERS`.

    ``create`` writes: ``memory.limit_in_bytes``, ``memory.memsw.limit_in_bytes`` (only with swap
    accounting, ordered so that memsw >= limit holds throughout), ``memory.soft_limit_in_bytes``,
    ``memory.swappiness``, ``cpu.shares``, ``cpu.cfs_period_us``, ``cpu.cfs_quota_us``, ``cpuset.cpus``/
    ``cpuset.mems`` (a new cpuset cgroup gets its nearest non-empty ancestor's values so processes can
    join), ``pids.max`` and the device rules, in order, to ``devices.allow``/``devices.deny``.
    """

    version = 1

    def __init__(self, paths: Mapping[str, str], roots: Mapping[str, str] | None = None) -> None:
        """``paths``: controller -> directory; ``roots``: controller -> hierarchy mount point (derived if
        ``None``)."""
        self._paths = dict(paths)
        self._roots = dict(roots) if roots is not None else None

    def paths(self) -> dict[str, str]:
        return dict(self._paths)

    def _root(self, controller: str) -> str:
        if self._roots is not None and controller in self._roots:
            return self._roots[controller]
        return _hierarchy_root(self._paths[controller], 1)

    def create(self, resources: CgroupResources) -> None:
        missing = sorted(resources.controllers_needed() - self._paths.keys())
        if missing:
            raise Unavailable(f"cgroup v1 controller(s) not mounted: {', '.join(missing)}")
        created: list[str] = []
        fresh: dict[str, bool] = {}
        try:
            for controller, path in self._paths.items():
                if path not in fresh:
                    fresh[path] = _make_dirs(path, self._root(controller), created)
            self._apply(resources, fresh, created)
        except OSError as exc:
            _undo(created)
            raise Unavailable(f"cannot create cgroup {exc.filename or ''}: {exc.strerror}") from exc
        except BaseException:
            _undo(created)
            raise

    def _apply(self, res: CgroupResources, fresh: Mapping[str, bool], created: list[str]) -> None:
        if "cpuset" in self._paths:
            self._init_cpuset(res, fresh, created)
        memory = self._paths.get("memory")
        if memory is not None:
            self._apply_memory(memory, res, fresh[memory])
        cpu = self._paths.get("cpu")
        if cpu is not None:
            if res.cpu_shares is not None:
                _set(f"{cpu}/cpu.shares", str(res.cpu_shares))
            if res.cpu_period is not None:
                _set(f"{cpu}/cpu.cfs_period_us", str(res.cpu_period))
            if res.cpu_quota is not None:
                _set(f"{cpu}/cpu.cfs_quota_us", str(res.cpu_quota))
        pids = self._paths.get("pids")
        if pids is not None and res.pids_limit is not None:
            _set(f"{pids}/pids.max", "max" if res.pids_limit == -1 else str(res.pids_limit))
        devices = self._paths.get("devices")
        if devices is not None:
            for rule in res.devices:
                _set(f"{devices}/devices.{'allow' if rule.allow else 'deny'}", rule.v1_rule())

    def _init_cpuset(self, res: CgroupResources, fresh: Mapping[str, bool], created: list[str]) -> None:
        """Give every new cpuset dir cpus and mems (they start empty, and empty refuses tasks)."""
        leaf = self._paths["cpuset"]
        chain = [path for path in created if path == leaf or leaf.startswith(path + "/")]
        if not fresh[leaf]:
            try:
                if _read(f"{leaf}/cpuset.cpus").strip() and _read(f"{leaf}/cpuset.mems").strip():
                    chain = []
                else:
                    chain = [leaf]
            except FileNotFoundError as exc:
                raise Unavailable(f"{leaf} has no cpuset.cpus") from exc
        cpus, mems = res.cpuset_cpus, res.cpuset_mems
        if chain:
            inherited_cpus, inherited_mems = self._inherited_cpuset(os.path.dirname(chain[0]))
            for path in chain[:-1]:
                _set(f"{path}/cpuset.cpus", inherited_cpus)
                _set(f"{path}/cpuset.mems", inherited_mems)
            cpus = cpus or inherited_cpus
            mems = mems or inherited_mems
        if cpus is not None:
            _set(f"{leaf}/cpuset.cpus", cpus)
        if mems is not None:
            _set(f"{leaf}/cpuset.mems", mems)

    def _inherited_cpuset(self, start: str) -> tuple[str, str]:
        path = start
        while True:
            cpus = _read(f"{path}/cpuset.cpus").strip()
            mems = _read(f"{path}/cpuset.mems").strip()
            if cpus and mems:
                return cpus, mems
            parent = os.path.dirname(path)
            if parent == path:
                raise Unavailable(f"no ancestor of {start} has cpuset.cpus and cpuset.mems set")
            path = parent

    @staticmethod
    def _apply_memory(memory: str, res: CgroupResources, fresh: bool) -> None:
        limit, swap = res.memory_limit, res.memory_swap
        if limit == -1 and swap is None:
            swap = -1  # unlimited memory must not stay capped by an old memsw
        limit_file = f"{memory}/memory.limit_in_bytes"
        swap_file = f"{memory}/memory.memsw.limit_in_bytes"
        if limit is not None and swap is not None:
            # memsw >= limit must hold after each write: raise memsw first when it grows past the limit.
            current = _INT64_MAX if fresh else int(_read(limit_file))
            if swap == -1 or current < swap:
                _set(swap_file, str(swap), optional=True)
                _set(limit_file, str(limit))
            else:
                _set(limit_file, str(limit))
                _set(swap_file, str(swap), optional=True)
        elif limit is not None:
            _set(limit_file, str(limit))
        elif swap is not None:
            _set(swap_file, str(swap), optional=True)
        if res.memory_reservation is not None:
            _set(f"{memory}/memory.soft_limit_in_bytes", str(res.memory_reservation))
        if res.memory_swappiness is not None:
            _set(f"{memory}/memory.swappiness", str(res.memory_swappiness))

    def add_process(self, pid: int) -> None:
        for path in self._dirs():
            self._enter(f"{path}/cgroup.procs", pid)

    def enter_current_thread(self) -> None:
        for path in self._dirs():
            self._enter(f"{path}/tasks", 0)

    def _freezer_state(self) -> str:
        path = self._freezer_file()
        try:
            return _read(path).strip()
        except OSError as exc:
            raise self._missing(path, exc, "cannot read the freezer state") from exc

    def _freezer_file(self) -> str:
        freezer = self._paths.get("freezer")
        if freezer is None:
            raise Unavailable("the v1 freezer controller is not mounted")
        return f"{freezer}/freezer.state"

    def _set_freezer(self, state: str) -> None:
        path = self._freezer_file()
        try:
            _write(path, state)
        except OSError as exc:
            raise self._missing(path, exc, f"cannot set the freezer to {state}") from exc

    def _can_freeze(self) -> bool:
        return "freezer" in self._paths

    def freeze(self) -> None:
        deadline = time.monotonic() + _FREEZE_TIMEOUT
        pause = 0.0001
        while True:
            self._set_freezer("FROZEN")  # rewritten each round, as runc does, to catch new forks
            if self._freezer_state() == "FROZEN":
                return
            if time.monotonic() >= deadline:
                self._set_freezer("THAWED")
                raise Unavailable(f"cgroup {self._paths['freezer']} did not freeze in {_FREEZE_TIMEOUT}s")
            time.sleep(pause)
            pause = min(pause * 2, 0.01)

    def thaw(self) -> None:
        self._set_freezer("THAWED")

    def is_frozen(self) -> bool:
        return self._freezer_state() == "FROZEN"

    def oom_kill_count(self) -> int:
        memory = self._paths.get("memory")
        if memory is None:
            return 0
        try:
            return _keyed_value(_read(f"{memory}/memory.oom_control"), "oom_kill") or 0
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise Unavailable(f"cannot read {memory}/memory.oom_control: {exc.strerror}") from exc

    def memory_usage(self) -> int | None:
        memory = self._paths.get("memory")
        if memory is None:
            return None
        try:
            return int(_read(f"{memory}/memory.usage_in_bytes"))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Unavailable(f"cannot read {memory}/memory.usage_in_bytes: {exc.strerror}") from exc


class V2Cgroup(Cgroup):
    """A cgroup in the unified (v2) hierarchy: one directory.

    ``create`` enables :data:`V2_CONTROLLERS` the kernel offers (plus any the resources need) in every
    ancestor's ``cgroup.subtree_control``, then writes ``memory.max``, ``memory.low``, ``memory.swap.max``
    (= swap - limit; skipped without swap accounting), ``cpu.weight`` (converted from shares),
    ``cpu.max``, ``cpuset.cpus``/``cpuset.mems`` and ``pids.max``. Device rules and swappiness are
    ignored on v2 (devices would need an eBPF program). Controllers enabled in pre-existing ancestors
    stay enabled if creation fails.
    """

    version = 2

    def __init__(self, path: str, mount_root: str | None = None) -> None:
        """``path``: the cgroup directory; ``mount_root``: the cgroup2 mount point (derived if ``None``)."""
        self._path = path
        self._mount_root = mount_root

    def paths(self) -> dict[str, str]:
        return {"": self._path}

    def create(self, resources: CgroupResources) -> None:
        root = self._mount_root or _hierarchy_root(self._path, 2)
        try:
            available = set(_read(f"{root}/cgroup.controllers").split())
        except OSError as exc:
            raise Unavailable(f"{root} is not a cgroup2 mount: {exc.strerror}") from exc
        needed = resources.controllers_needed() - {"devices"}
        missing = sorted(needed - available)
        if missing:
            raise Unavailable(f"cgroup v2 controller(s) not available in {root}: {', '.join(missing)}")
        wanted = (set(V2_CONTROLLERS) | needed) & available
        relative = os.path.relpath(self._path, root)
        if relative.startswith("..") or relative == ".":
            raise InvalidParameter(f"cgroup {self._path} is not below {root}")
        created: list[str] = []
        try:
            parent = root
            for part in relative.split("/"):
                if wanted:
                    wanted = self._enable(parent, wanted, needed)
                current = f"{parent}/{part}"
                _make_dirs(current, parent, created)
                parent = current
            self._apply(resources)
        except OSError as exc:
            _undo(created)
            raise Unavailable(f"cannot create cgroup {exc.filename or self._path}: {exc.strerror}") from exc
        except BaseException:
            _undo(created)
            raise

    @staticmethod
    def _enable(parent: str, wanted: set[str], needed: AbstractSet[str]) -> set[str]:
        """Enable ``wanted`` in ``parent``'s subtree_control; returns what is enabled there.

        Controllers only wanted (for stats) are dropped if the kernel refuses them (e.g. EBUSY: the
        parent has processes of its own); refusing a needed one raises Unavailable.
        """
        control = f"{parent}/cgroup.subtree_control"
        enabled = set(_read(control).split())
        todo = wanted - enabled
        if not todo:
            return wanted
        try:
            _write(control, " ".join(f"+{name}" for name in sorted(todo)))
            return wanted
        except OSError as exc:
            must = todo & needed
            if must:
                try:
                    _write(control, " ".join(f"+{name}" for name in sorted(must)))
                except OSError:
                    raise Unavailable(
                        f"cannot enable {', '.join(sorted(must))} in {control}: {exc.strerror}") from exc
            return (wanted & enabled) | must

    def _apply(self, res: CgroupResources) -> None:
        path = self._path
        if res.memory_limit is not None:
            _set(f"{path}/memory.max", "max" if res.memory_limit == -1 else str(res.memory_limit))
        if res.memory_reservation is not None:
            _set(f"{path}/memory.low", str(res.memory_reservation))
        swap_max: str | None = None
        if res.memory_swap == -1 or (res.memory_swap is None and res.memory_limit == -1):
            swap_max = "max"
        elif res.memory_swap is not None and res.memory_limit is not None:
            swap_max = str(res.memory_swap - res.memory_limit)
        if swap_max is not None:
            _set(f"{path}/memory.swap.max", swap_max, optional=True)
        if res.cpu_shares is not None:
            _set(f"{path}/cpu.weight", str(cpu_weight_from_shares(res.cpu_shares)))
        if res.cpu_quota is not None or res.cpu_period is not None:
            value = "max" if res.cpu_quota in (None, -1) else str(res.cpu_quota)
            if res.cpu_period is not None:
                value += f" {res.cpu_period}"
            _set(f"{path}/cpu.max", value)
        if res.cpuset_cpus is not None:
            _set(f"{path}/cpuset.cpus", res.cpuset_cpus)
        if res.cpuset_mems is not None:
            _set(f"{path}/cpuset.mems", res.cpuset_mems)
        if res.pids_limit is not None:
            _set(f"{path}/pids.max", "max" if res.pids_limit == -1 else str(res.pids_limit))

    def add_process(self, pid: int) -> None:
        self._enter(f"{self._path}/cgroup.procs", pid)

    def enter_current_thread(self) -> None:
        self._enter(f"{self._path}/cgroup.procs", 0)

    def _write_freeze(self, value: str) -> None:
        path = f"{self._path}/cgroup.freeze"
        try:
            _write(path, value)
        except OSError as exc:
            raise self._missing(path, exc, "no cgroup v2 freezer (kernel < 5.2?)") from exc

    def freeze(self) -> None:
        self._write_freeze("1")
        deadline = time.monotonic() + _FREEZE_TIMEOUT
        pause = 0.0001
        while not self.is_frozen():
            if time.monotonic() >= deadline:
                self._write_freeze("0")
                raise Unavailable(f"cgroup {self._path} did not freeze in {_FREEZE_TIMEOUT}s")
            time.sleep(pause)
            pause = min(pause * 2, 0.01)

    def thaw(self) -> None:
        self._write_freeze("0")

    def is_frozen(self) -> bool:
        path = f"{self._path}/cgroup.events"
        try:
            return _keyed_value(_read(path), "frozen") == 1
        except OSError as exc:
            raise self._missing(path, exc, "cannot read cgroup.events") from exc

    def kill_all(self, sig: int) -> None:
        """As :meth:`Cgroup.kill_all`; SIGKILL goes through ``cgroup.kill`` when the kernel has it (5.14+),
        which kills frozen processes too and leaves the cgroup thawed."""
        if sig == signal.SIGKILL:
            try:
                _write(f"{self._path}/cgroup.kill", "1")
                try:
                    _write(f"{self._path}/cgroup.freeze", "0")
                except OSError:
                    pass
                return
            except FileNotFoundError:
                if not os.path.isdir(self._path):
                    return
            except OSError as exc:
                raise Unavailable(f"cannot write {self._path}/cgroup.kill: {exc.strerror}") from exc
        super().kill_all(sig)

    def oom_kill_count(self) -> int:
        try:
            return _keyed_value(_read(f"{self._path}/memory.events"), "oom_kill") or 0
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise Unavailable(f"cannot read {self._path}/memory.events: {exc.strerror}") from exc

    def memory_usage(self) -> int | None:
        try:
            return int(_read(f"{self._path}/memory.current"))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Unavailable(f"cannot read {self._path}/memory.current: {exc.strerror}") from exc


# --------------------------------------------------------------------------------------------------------
# Entry points


def open_cgroup(cgroups_path: str, container_id: str, *, mount_root: str = DEFAULT_MOUNT_ROOT,
                version: int | None = None) -> Cgroup:
    """The cgroup for OCI ``linux.cgroupsPath`` of container ``container_id``; creates nothing.

    The path is mapped by :func:`resolve_cgroups_path` (empty -> ``/berth-runtime/<id>``, absolute and
    relative paths both under the hierarchy root, ``slice:prefix:name`` -> systemd layout) and placed
    under ``mount_root``. ``version`` ``None`` detects it (:func:`cgroup_version`); v1 hierarchies are
    found in /proc/self/mountinfo among the mounts directly in ``mount_root``.

    Raises InvalidParameter for a bad path (``..``, the root itself) or version, Unavailable if no cgroup
    filesystem (or no v1 controller) is mounted there.
    """
    relative = resolve_cgroups_path(cgroups_path, container_id)
    root = os.path.normpath(os.path.abspath(mount_root))
    if version == 2:
        return V2Cgroup(root + relative, mount_root=root)
    if version not in (None, 1):
        raise InvalidParameter(f"cgroup version must be 1 or 2: {version!r}")
    real_root = os.path.realpath(root)
    mounts = _read_mountinfo()
    if version is None and _version_from_mounts(real_root, mounts) == 2:
        return V2Cgroup(root + relative, mount_root=root)
    hierarchies = _v1_hierarchies(real_root, mounts)
    if not hierarchies:
        raise Unavailable(f"no cgroup v1 controller is mounted in {root}")
    return V1Cgroup({name: mp + relative for name, mp in hierarchies.items()}, roots=hierarchies)


def restore_cgroup(paths: dict[str, str], version: int) -> Cgroup:
    """Rebuild a cgroup from :meth:`Cgroup.paths` as saved in a state file; touches nothing.

    Raises InvalidParameter for an unknown version or controller, or paths that are not absolute and
    normalized.
    """
    if version == 2:
        if set(paths) != {""}:
            raise InvalidParameter(f"a v2 cgroup has exactly one path, keyed \"\": {paths!r}")
        return V2Cgroup(_validated_abs(paths[""], "cgroup path"))
    if version == 1:
        unknown = sorted(set(paths) - set(V1_CONTROLLERS) - set(V1_TRACKING))
        if unknown or not set(paths) & set(V1_CONTROLLERS):
            raise InvalidParameter(f"unknown or no v1 controllers in cgroup paths: {paths!r}")
        return V1Cgroup({name: _validated_abs(path, f"cgroup path of {name}")
                         for name, path in paths.items()})
    raise InvalidParameter(f"cgroup version must be 1 or 2: {version!r}")
