"""The OCI runtime configuration (config.json), parsed and validated into typed values.

``load_bundle`` reads ``<bundle>/config.json`` and either returns a complete ``Spec`` or raises
``InvalidParameter`` / ``NotFound`` with one line naming the field at fault. Nothing on the system is
touched while parsing, so bad input can never leave anything behind.
"""

from __future__ import annotations

import json
import os
import resource
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from backend.engine.errors import InvalidParameter, NotFound
from backend.engine.runtime.capabilities import CapabilitySets, cap_mask
from backend.engine.runtime.cgroups import CgroupResources, parse_resources
from backend.engine.runtime.seccomp import SeccompConfig, parse_seccomp

MAX_CONFIG_BYTES = 4 * 1024 * 1024

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup")

RLIMITS: dict[str, int] = {
    name: getattr(resource, name)
    for name in (
        "RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_LOCKS",
        "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE", "RLIMIT_NPROC",
        "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK",
    )
    if hasattr(resource, name)
}


@dataclass(frozen=True)
class Rlimit:
    resource: int
    soft: int
    hard: int


@dataclass(frozen=True)
class Process:
    """``process`` of config.json (also the document ``exec --process`` reads)."""

    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    umask: int | None = None
    additional_gids: tuple[int, ...] = ()
    terminal: bool = False
    console_size: tuple[int, int] | None = None
    capabilities: CapabilitySets = field(default_factory=CapabilitySets)
    rlimits: tuple[Rlimit, ...] = ()
    no_new_privileges: bool = False
    oom_score_adj: int | None = None


@dataclass(frozen=True)
class Mount:
    destination: str
    type: str
    source: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Namespace:
    type: str
    path: str | None = None


@dataclass(frozen=True)
class IdMapping:
    container_id: int
    host_id: int
    size: int


@dataclass(frozen=True)
class Device:
    path: str
    type: str
    major: int
    minor: int
    file_mode: int
    uid: int
    gid: int


@dataclass(frozen=True)
class Hook:
    path: str
    args: tuple[str, ...]
    env: tuple[str, ...]
    timeout: int | None


@dataclass(frozen=True)
class Spec:
    """A validated OCI runtime configuration. ``rootfs`` is absolute and exists."""

    bundle: str
    rootfs: str
    readonly_root: bool
    process: Process
    hostname: str | None
    domainname: str | None
    mounts: tuple[Mount, ...]
    namespaces: tuple[Namespace, ...]
    uid_mappings: tuple[IdMapping, ...]
    gid_mappings: tuple[IdMapping, ...]
    devices: tuple[Device, ...]
    cgroups_path: str
    resources: CgroupResources
    sysctl: Mapping[str, str]
    seccomp: SeccompConfig | None
    rootfs_propagation: str | None
    masked_paths: tuple[str, ...]
    readonly_paths: tuple[str, ...]
    hooks: Mapping[str, tuple[Hook, ...]]
    annotations: Mapping[str, str]
    raw: Mapping[str, Any]

    def namespace(self, kind: str) -> Namespace | None:
        """The namespace entry of that type, or None when the container shares the host's."""
        for ns in self.namespaces:
            if ns.type == kind:
                return ns
        return None


def _fail(where: str, problem: str) -> InvalidParameter:
    return InvalidParameter(f"config.json: {where}: {problem}")


def _obj(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(where, "expected an object")
    return value


def _list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(where, "expected an array")
    return value


def _str(value: object, where: str, *, optional: bool = False) -> str:
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise _fail(where, "expected a string")
    if "\x00" in value:
        raise _fail(where, "contains a NUL byte")
    return value


def _strs(value: object, where: str) -> tuple[str, ...]:
    return tuple(_str(v, f"{where}[{i}]") for i, v in enumerate(_list(value, where)))


def _int(value: object, where: str, *, lo: int = 0, hi: int = 2**32 - 1, default: int | None = None) -> int:
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, "expected an integer")
    if not lo <= value <= hi:
        raise _fail(where, f"{value} is out of range {lo}..{hi}")
    return value


def parse_process(raw: object, where: str = "process") -> Process:
    """Validate a ``process`` object. Raises InvalidParameter."""
    proc = _obj(raw, where)
    if not proc:
        raise _fail(where, "missing (a process to run is required)")
    args = _strs(proc.get("args"), f"{where}.args")
    if not args or not args[0]:
        raise _fail(f"{where}.args", "must name a program to run")
    env = _strs(proc.get("env"), f"{where}.env")
    for item in env:
        if "=" not in item:
            raise _fail(f"{where}.env", f'"{item}" is not NAME=value')
    cwd = _str(proc.get("cwd", "/"), f"{where}.cwd")
    if not cwd.startswith("/"):
        raise _fail(f"{where}.cwd", f'"{cwd}" is not an absolute path')
    user = _obj(proc.get("user"), f"{where}.user")
    umask = user.get("umask")
    caps_raw = _obj(proc.get("capabilities"), f"{where}.capabilities")
    caps = CapabilitySets(**{
        name: cap_mask(_strs(caps_raw.get(name), f"{where}.capabilities.{name}"), name)
        for name in ("bounding", "effective", "inheritable", "permitted", "ambient")
    })
    rlimits = []
    for i, item in enumerate(_list(proc.get("rlimits"), f"{where}.rlimits")):
        entry = _obj(item, f"{where}.rlimits[{i}]")
        kind = _str(entry.get("type"), f"{where}.rlimits[{i}].type")
        if kind not in RLIMITS:
            raise _fail(f"{where}.rlimits[{i}].type", f'unknown rlimit "{kind}"')
        soft = _int(entry.get("soft"), f"{where}.rlimits[{i}].soft", hi=2**64 - 1)
        hard = _int(entry.get("hard"), f"{where}.rlimits[{i}].hard", hi=2**64 - 1)
        if soft > hard:
            raise _fail(f"{where}.rlimits[{i}]", f"soft limit {soft} exceeds hard limit {hard}")
        rlimits.append(Rlimit(RLIMITS[kind], soft, hard))
    size = _obj(proc.get("consoleSize"), f"{where}.consoleSize")
    nnp = proc.get("noNewPrivileges", False)
    terminal = proc.get("terminal", False)
    if not isinstance(nnp, bool) or not isinstance(terminal, bool):
        raise _fail(where, "terminal and noNewPrivileges must be true or false")
    oom = proc.get("oomScoreAdj")
    return Process(
        args=args,
        env=env,
        cwd=os.path.normpath(cwd),
        uid=_int(user.get("uid"), f"{where}.user.uid", default=0),
        gid=_int(user.get("gid"), f"{where}.user.gid", default=0),
        umask=None if umask is None else _int(umask, f"{where}.user.umask", hi=0o777),
        additional_gids=tuple(
            _int(g, f"{where}.user.additionalGids[{i}]")
            for i, g in enumerate(_list(user.get("additionalGids"), f"{where}.user.additionalGids"))
        ),
        terminal=terminal,
        console_size=(
            (_int(size.get("height"), f"{where}.consoleSize.height", hi=65535, default=0),
             _int(size.get("width"), f"{where}.consoleSize.width", hi=65535, default=0))
            if size else None
        ),
        capabilities=caps,
        rlimits=tuple(rlimits),
        no_new_privileges=nnp,
        oom_score_adj=None if oom is None else _int(oom, f"{where}.oomScoreAdj", lo=-1000, hi=1000),
    )


def _mappings(raw: object, where: str) -> tuple[IdMapping, ...]:
    out: list[IdMapping] = []
    for i, item in enumerate(_list(raw, where)):
        entry = _obj(item, f"{where}[{i}]")
        m = IdMapping(
            _int(entry.get("containerID"), f"{where}[{i}].containerID"),
            _int(entry.get("hostID"), f"{where}[{i}].hostID"),
            _int(entry.get("size"), f"{where}[{i}].size", lo=1),
        )
        if m.container_id + m.size > 2**32 or m.host_id + m.size > 2**32:
            raise _fail(f"{where}[{i}]", "mapping runs past 2^32")
        for other in out:
            if (m.container_id < other.container_id + other.size
                    and other.container_id < m.container_id + m.size):
                raise _fail(f"{where}[{i}]", "invalid id mapping: container ranges overlap")
            if m.host_id < other.host_id + other.size and other.host_id < m.host_id + m.size:
                raise _fail(f"{where}[{i}]", "invalid id mapping: host ranges overlap")
        out.append(m)
    if len(out) > 340:
        raise _fail(where, "too many id mappings (the kernel takes at most 340)")
    return tuple(out)


def _mounts(raw: object) -> tuple[Mount, ...]:
    out = []
    for i, item in enumerate(_list(raw, "mounts")):
        entry = _obj(item, f"mounts[{i}]")
        dest = _str(entry.get("destination"), f"mounts[{i}].destination")
        if not dest.startswith("/"):
            raise _fail(f"mounts[{i}].destination", f'"{dest}" is not an absolute path')
        kind = _str(entry.get("type"), f"mounts[{i}].type", optional=True)
        options = _strs(entry.get("options"), f"mounts[{i}].options")
        if not kind:
            kind = "bind" if ("bind" in options or "rbind" in options) else "none"
        out.append(Mount(os.path.normpath(dest), kind, _str(entry.get("source"), f"mounts[{i}].source",
                                                              optional=True), options))
    return tuple(out)


_IPC_SYSCTLS = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                          "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"})


def _sysctl_namespace(key: str) -> str | None:
    """The namespace type that isolates sysctl ``key``, as runc decides; None for a host-wide one
    (``kernel.core_pattern``, ``vm.*``...), which no container may set."""
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        return "ipc"
    if key.startswith("net."):
        return "network"
    if key in ("kernel.hostname", "kernel.domainname"):
        return "uts"
    return None


def _namespaces(raw: object) -> tuple[Namespace, ...]:
    out: list[Namespace] = []
    for i, item in enumerate(_list(raw, "linux.namespaces")):
        entry = _obj(item, f"linux.namespaces[{i}]")
        kind = _str(entry.get("type"), f"linux.namespaces[{i}].type")
        if kind not in NAMESPACE_TYPES:
            raise _fail(f"linux.namespaces[{i}].type",
                        f'unknown namespace type "{kind}" (known: {", ".join(NAMESPACE_TYPES)})')
        if any(ns.type == kind for ns in out):
            raise _fail(f"linux.namespaces[{i}]", f'namespace "{kind}" listed twice')
        path = entry.get("path")
        if path is not None:
            path = _str(path, f"linux.namespaces[{i}].path")
            if not path.startswith("/"):
                raise _fail(f"linux.namespaces[{i}].path", f'"{path}" is not an absolute path')
        out.append(Namespace(kind, path or None))
    return tuple(out)


def _devices(raw: object) -> tuple[Device, ...]:
    out = []
    for i, item in enumerate(_list(raw, "linux.devices")):
        e = _obj(item, f"linux.devices[{i}]")
        kind = _str(e.get("type"), f"linux.devices[{i}].type")
        if kind not in ("c", "b", "u", "p"):
            raise _fail(f"linux.devices[{i}].type", f'unknown device type "{kind}"')
        path = _str(e.get("path"), f"linux.devices[{i}].path")
        if not path.startswith("/dev/"):
            raise _fail(f"linux.devices[{i}].path", f'"{path}" is not under /dev')
        out.append(Device(
            path=os.path.normpath(path), type=kind,
            major=_int(e.get("major"), f"linux.devices[{i}].major", default=0),
            minor=_int(e.get("minor"), f"linux.devices[{i}].minor", default=0),
            file_mode=_int(e.get("fileMode"), f"linux.devices[{i}].fileMode", hi=0o7777, default=0o666),
            uid=_int(e.get("uid"), f"linux.devices[{i}].uid", default=0),
            gid=_int(e.get("gid"), f"linux.devices[{i}].gid", default=0),
        ))
    return tuple(out)


HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def _hooks(raw: object) -> dict[str, tuple[Hook, ...]]:
    hooks = _obj(raw, "hooks")
    out: dict[str, tuple[Hook, ...]] = {}
    for kind, entries in hooks.items():
        if kind not in HOOK_KINDS:
            raise _fail("hooks", f'unknown hook kind "{kind}"')
        parsed = []
        for i, item in enumerate(_list(entries, f"hooks.{kind}")):
            e = _obj(item, f"hooks.{kind}[{i}]")
            path = _str(e.get("path"), f"hooks.{kind}[{i}].path")
            if not path.startswith("/"):
                raise _fail(f"hooks.{kind}[{i}].path", f'"{path}" is not an absolute path')
            timeout = e.get("timeout")
            parsed.append(Hook(path, _strs(e.get("args"), f"hooks.{kind}[{i}].args"),
                               _strs(e.get("env"), f"hooks.{kind}[{i}].env"),
                               None if timeout is None else _int(timeout, f"hooks.{kind}[{i}].timeout", lo=1)))
        out[kind] = tuple(parsed)
    return out


def parse_config(doc: object, bundle: str) -> Spec:
    """Validate a decoded config.json for ``bundle``. Raises InvalidParameter or NotFound (rootfs)."""
    if not isinstance(doc, dict):
        raise InvalidParameter("config.json: the document must be a JSON object")
    root = _obj(doc.get("root"), "root")
    root_path = _str(root.get("path"), "root.path") if root else ""
    if not root_path:
        raise _fail("root.path", "missing")
    rootfs = os.path.normpath(os.path.join(bundle, root_path))
    if not os.path.isdir(rootfs):
        raise NotFound(f"rootfs ({rootfs}) does not exist or is not a directory")
    readonly = root.get("readonly", False)
    if not isinstance(readonly, bool):
        raise _fail("root.readonly", "expected true or false")
    linux = _obj(doc.get("linux"), "linux")
    namespaces = _namespaces(linux.get("namespaces"))
    uid_maps = _mappings(linux.get("uidMappings"), "linux.uidMappings")
    gid_maps = _mappings(linux.get("gidMappings"), "linux.gidMappings")
    has_user = any(ns.type == "user" for ns in namespaces)
    user_ns = next((ns for ns in namespaces if ns.type == "user"), None)
    if has_user and user_ns is not None and user_ns.path is None and (not uid_maps or not gid_maps):
        raise _fail("linux.uidMappings", "a new user namespace needs uidMappings and gidMappings")
    if (uid_maps or gid_maps) and not has_user:
        raise _fail("linux.uidMappings", "id mappings given without a user namespace")
    sysctl_raw = _obj(linux.get("sysctl"), "linux.sysctl")
    sysctl = {}
    kinds = {ns.type for ns in namespaces}
    for key, value in sysctl_raw.items():
        if not key or "/" in key or ".." in key:
            raise _fail("linux.sysctl", f'invalid sysctl name "{key}"')
        if _sysctl_namespace(key) not in kinds:
            raise _fail("linux.sysctl", f'sysctl "{key}" is not in a separate kernel namespace')
        sysctl[key] = _str(value, f"linux.sysctl.{key}")
    propagation = linux.get("rootfsPropagation")
    if propagation is not None and propagation not in (
            "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable"):
        raise _fail("linux.rootfsPropagation", f'unknown propagation "{propagation}"')
    hostname = doc.get("hostname")
    domainname = doc.get("domainname")
    annotations = _obj(doc.get("annotations"), "annotations")
    try:
        resources = parse_resources(linux.get("resources"))
        seccomp = None if linux.get("seccomp") is None else parse_seccomp(linux.get("seccomp"))
    except InvalidParameter as exc:
        msg = str(exc)
        raise InvalidParameter(msg if msg.startswith("config.json") else f"config.json: {msg}") from exc
    return Spec(
        bundle=bundle,
        rootfs=rootfs,
        readonly_root=readonly,
        process=parse_process(doc.get("process")),
        hostname=None if hostname is None else _str(hostname, "hostname"),
        domainname=None if domainname is None else _str(domainname, "domainname"),
        mounts=_mounts(doc.get("mounts")),
        namespaces=namespaces,
        uid_mappings=uid_maps,
        gid_mappings=gid_maps,
        devices=_devices(linux.get("devices")),
        cgroups_path=_str(linux.get("cgroupsPath"), "linux.cgroupsPath", optional=True),
        resources=resources,
        sysctl=sysctl,
        seccomp=seccomp,
        rootfs_propagation=propagation,
        masked_paths=_strs(linux.get("maskedPaths"), "linux.maskedPaths"),
        readonly_paths=_strs(linux.get("readonlyPaths"), "linux.readonlyPaths"),
        hooks=_hooks(doc.get("hooks")),
        annotations={str(k): str(v) for k, v in annotations.items()},
        raw=doc,
    )


def read_json_file(path: str, what: str) -> object:
    """Read a JSON document of at most MAX_CONFIG_BYTES. Raises NotFound / InvalidParameter."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError as exc:
        raise NotFound(f"{what}: {path} does not exist") from exc
    except OSError as exc:
        raise InvalidParameter(f"{what}: cannot read {path}: {exc.strerror}") from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise InvalidParameter(f"{what}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidParameter(f"{what}: not valid JSON: {exc}") from exc


def load_bundle(bundle: str) -> Spec:
    """Read and validate ``<bundle>/config.json``. Raises NotFound or InvalidParameter."""
    bundle = os.path.realpath(bundle)
    return parse_config(read_json_file(os.path.join(bundle, "config.json"), "config.json"), bundle)


def parse_signal(text: str) -> int:
    """A signal given as a number, ``KILL`` or ``SIGKILL``. Raises InvalidParameter."""
    if text.isdigit():
        number = int(text)
        if 0 < number < signal.NSIG:
            return number
        raise InvalidParameter(f'invalid signal "{text}"')
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError as exc:
        raise InvalidParameter(f'invalid signal "{text}"') from exc
