"""``POST /containers/create`` bodies: parsed and validated into a typed ``CreateRequest``.

Lenient where Docker is (unknown keys, nulls and zero values are ignored, as the docker CLI sends
them all), strict where Docker is: names, signals, restart policies, memory below 6 MB, capabilities,
ulimits, sizes. Every rejection raises InvalidParameter with Docker's message where it has one.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from backend.engine.errors import InvalidParameter
from backend.engine.networks.service import NetworkRequest, endpoint_request
from backend.engine.runtime.capabilities import CAPABILITIES

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
MIN_MEMORY = 6 * 1024 * 1024
RESTART_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")
ULIMITS = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
           "rtprio", "rttime", "sigpending", "stack", "as")


@dataclass(frozen=True)
class RestartPolicy:
    name: str = "no"
    maximum_retry_count: int = 0


@dataclass(frozen=True)
class Ulimit:
    name: str
    soft: int
    hard: int


@dataclass(frozen=True)
class CreateRequest:
    """What a user asked for; image defaults are applied later, by the spec builder."""

    image: str
    name: str | None = None
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = field(default_factory=list)
    user: str = ""
    working_dir: str = ""
    hostname: str = ""
    domainname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    stop_signal: str | None = None
    stop_timeout: int | None = None
    exposed_ports: list[str] = field(default_factory=list)
    # HostConfig
    auto_remove: bool = False
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    readonly_rootfs: bool = False
    memory: int = 0
    memory_swap: int = 0
    nano_cpus: int = 0
    cpu_shares: int = 0
    cpu_period: int = 0
    cpu_quota: int = 0
    cpuset_cpus: str = ""
    pids_limit: int = 0
    ulimits: list[Ulimit] = field(default_factory=list)
    shm_size: int = 0
    tmpfs: dict[str, str] = field(default_factory=dict)
    binds: list[str] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    volumes_from: list[str] = field(default_factory=list)
    init: bool = False
    network_mode: str = "default"
    sysctls: dict[str, str] = field(default_factory=dict)
    oom_score_adj: int = 0
    networking: NetworkRequest = field(default_factory=NetworkRequest)


def _get(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    """``obj[key]`` if it has type ``kind`` (booleans are not integers here), None if absent or null."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidParameter(f"{where}{key}: expected {kind.__name__}")
    return value


_GO_FIELD = {"": "ContainerConfigWrapper.", "HostConfig.": "HostConfig.HostConfig."}
"""How dockerd names the struct of a field in its JSON errors."""


def _strings(obj: Mapping[str, Any], key: str, where: str, *, str_slice: bool = False) -> list[str] | None:
    """``obj[key]`` as a list of strings, None if absent or null. A plain string is one item only for
    Docker's ``StrSlice`` fields (``str_slice``: Cmd, Entrypoint, CapAdd, CapDrop); for the others it is
    refused with dockerd's message. Raises InvalidParameter."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        if str_slice:
            return [value]
        raise InvalidParameter(f"json: cannot unmarshal string into Go struct field {_GO_FIELD.get(where, where)}{key} "
                               "of type []string")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParameter(f"{where}{key}: expected a list of strings")
    return list(value)


def _int(obj: Mapping[str, Any], key: str, where: str, lo: int = 0, hi: int = 2**63 - 1) -> int:
    value = _get(obj, key, int, where)
    if value is None:
        return 0
    if not lo <= value <= hi:
        raise InvalidParameter(f"{where}{key}: {value} is out of range")
    return int(value)


_TMPFS_FLAGS = frozenset({
    "defaults", "ro", "rw", "suid", "nosuid", "dev", "nodev", "exec", "noexec", "sync", "async", "dirsync",
    "mand", "nomand", "atime", "noatime", "diratime", "nodiratime", "relatime", "norelatime", "strictatime",
    "nostrictatime", "private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable"})
_TMPFS_SIZE = re.compile(r"\d+[kKmMgGtTpPeE]?|\d{1,3}%")
_TMPFS_VALUES = {
    "size": _TMPFS_SIZE, "nr_blocks": _TMPFS_SIZE, "nr_inodes": _TMPFS_SIZE, "mode": re.compile(r"[0-7]{1,4}"),
    "uid": re.compile(r"\d{1,10}"), "gid": re.compile(r"\d{1,10}"),
    "huge": re.compile(r"never|always|within_size|advise|deny|force"), "mpol": re.compile(r"[a-z]+(=[0-9,-]+)?"),
}


def validate_tmpfs_options(path: str, options: object) -> None:
    """Check one ``HostConfig.Tmpfs`` entry's options as the kernel will parse them, so a bad one is the
    client's 400 at create rather than a failed mount. Raises InvalidParameter naming the option."""
    if not isinstance(options, str):
        raise InvalidParameter(f"Tmpfs {path}: options must be a string")
    for option in filter(None, options.split(",")):
        key, eq, value = option.partition("=")
        pattern = _TMPFS_VALUES.get(key)
        if (not eq and key not in _TMPFS_FLAGS) or (eq and (pattern is None or not pattern.fullmatch(value))):
            raise InvalidParameter(f"Tmpfs {path}: invalid option {option!r}")


def validate_name(name: str) -> str:
    """A container name without its leading slash. Raises InvalidParameter with Docker's message."""
    if not NAME_RE.match(name):
        raise InvalidParameter(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")


def validate_signal(text: str) -> int:
    """A signal by number, ``KILL`` or ``SIGKILL``. Raises InvalidParameter ("Invalid signal: X")."""
    if text.isdigit():
        number = int(text)
        if 0 < number < signal.NSIG:
            return number
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        if name in signal.Signals.__members__:
            return int(signal.Signals[name])
        if name.startswith("SIGRTMIN") or name.startswith("SIGRTMAX"):
            base = signal.SIGRTMIN if name.startswith("SIGRTMIN") else signal.SIGRTMAX
            offset = name[8:]
            try:
                number = base + int(offset) if offset else base
            except ValueError:
                number = 0
            if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
                return int(number)
    raise InvalidParameter(f"Invalid signal: {text}")


def parse_restart_policy(raw: Mapping[str, Any] | None) -> RestartPolicy:
    """Raises InvalidParameter with Docker's messages."""
    if not raw:
        return RestartPolicy()
    name = raw.get("Name") or ""
    if not isinstance(name, str) or name not in RESTART_POLICIES:
        raise InvalidParameter(f"invalid restart policy '{name}'")
    count = _int(raw, "MaximumRetryCount", "RestartPolicy.", 0, 2**31 - 1)
    if count and name != "on-failure":
        raise InvalidParameter(f"maximum retry count cannot be used with restart policy '{name}'")
    return RestartPolicy(name or "no", count)


def _caps(values: list[str] | None, where: str) -> list[str]:
    out = []
    for value in values or []:
        cap = value.upper()
        if cap == "ALL":
            out.append("ALL")
            continue
        cap = cap if cap.startswith("CAP_") else "CAP_" + cap
        if cap not in CAPABILITIES:
            raise InvalidParameter(f"invalid {where}: unknown capability: \"{value}\"")
        out.append(cap)
    return out


def parse_networking(body: Mapping[str, Any], host: Mapping[str, Any], exposed: list[str]) -> NetworkRequest:
    """The networking fields: NetworkMode, NetworkingConfig.EndpointsConfig, PortBindings, PublishAllPorts,
    ExtraHosts, Dns, DnsSearch, DnsOptions. Raises InvalidParameter for wrong types."""
    bindings = host.get("PortBindings") or {}
    if not isinstance(bindings, dict) or not all(
            isinstance(v, list | None) and all(isinstance(b, dict) for b in v or []) for v in bindings.values()):
        raise InvalidParameter("HostConfig.PortBindings: expected an object of lists of bindings")
    networking = body.get("NetworkingConfig") or {}
    endpoints = networking.get("EndpointsConfig") or {} if isinstance(networking, dict) else None
    if not isinstance(endpoints, dict) or not all(isinstance(v, dict | None) for v in endpoints.values()):
        raise InvalidParameter("NetworkingConfig.EndpointsConfig: expected an object of endpoint settings")
    return NetworkRequest(
        mode=_get(host, "NetworkMode", str, "HostConfig.") or "default",
        endpoints={str(k): endpoint_request(v or {}) for k, v in endpoints.items()},
        hostname=_get(body, "Hostname", str, "") or "", domainname=_get(body, "Domainname", str, "") or "",
        dns=_strings(host, "Dns", "HostConfig.") or [], dns_search=_strings(host, "DnsSearch", "HostConfig.") or [],
        dns_options=_strings(host, "DnsOptions", "HostConfig.") or [],
        extra_hosts=_strings(host, "ExtraHosts", "HostConfig.") or [],
        port_bindings={str(k): [{str(a): str(b or "") for a, b in v.items()} for v in hosts or []]
                       for k, hosts in bindings.items()},
        exposed=exposed, publish_all=bool(host.get("PublishAllPorts")))


HEALTH_TESTS = ("NONE", "CMD", "CMD-SHELL")
MIN_HEALTH_DURATION = 1_000_000
"""dockerd's ``MinimumDuration`` for health check durations (1ms, in nanoseconds)."""


def validate_healthcheck(raw: object) -> None:
    """A ``Healthcheck``: ``Test`` empty (the image's), ``["NONE"]``, ``["CMD", cmd, ...]`` or ``["CMD-SHELL",
    text]``; durations 0 or at least 1ms, retries not negative. Raises InvalidParameter (Docker's messages)."""
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise InvalidParameter("Healthcheck: expected an object")
    test = _strings(raw, "Test", "Healthcheck.") or []
    if test and (test[0] not in HEALTH_TESTS or (test[0] == "NONE") != (len(test) == 1)):
        raise InvalidParameter(f"Healthcheck.Test: expected [\"NONE\"], [\"CMD\", command...] or "
                               f"[\"CMD-SHELL\", command], not {test!r}")
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        value = _get(raw, key, int, "Healthcheck.")
        if value and value < MIN_HEALTH_DURATION:
            raise InvalidParameter(f"{key} in Healthcheck cannot be less than 1ms")
    if (_get(raw, "Retries", int, "Healthcheck.") or 0) < 0:
        raise InvalidParameter("Retries in Healthcheck cannot be negative")


def parse_create_request(body: object, name: str | None = None) -> CreateRequest:
    """Validate a create body (``Config`` fields at the top level and ``HostConfig``). Raises InvalidParameter."""
    if not isinstance(body, dict):
        raise InvalidParameter("config cannot be empty in order to create a container")
    image = body.get("Image")
    if not isinstance(image, str) or not image:
        raise InvalidParameter("No command specified" if image is None and not body.get("Cmd") else
                               "image name is required")
    host = body.get("HostConfig") or {}
    if not isinstance(host, dict):
        raise InvalidParameter("HostConfig: expected an object")
    memory = _int(host, "Memory", "HostConfig.")
    if memory and memory < MIN_MEMORY:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    swap = _get(host, "MemorySwap", int, "HostConfig.") or 0
    if swap > 0 and memory and swap < memory:
        raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, see usage")
    if swap > 0 and not memory:
        raise InvalidParameter("You should always set the Memory limit when using Memoryswap limit, see usage")
    ulimits = []
    for raw in host.get("Ulimits") or []:
        if not isinstance(raw, dict) or raw.get("Name") not in ULIMITS:
            raise InvalidParameter(f"invalid ulimit: {raw!r}")
        soft, hard = _int(raw, "Soft", "Ulimit."), _int(raw, "Hard", "Ulimit.")
        if soft > hard:
            raise InvalidParameter(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
        ulimits.append(Ulimit(str(raw["Name"]), soft, hard))
    stop_signal = body.get("StopSignal")
    if stop_signal is not None:
        if not isinstance(stop_signal, str):
            raise InvalidParameter("StopSignal: expected a string")
        validate_signal(stop_signal)
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise InvalidParameter("Labels: expected an object of strings")
    tmpfs = host.get("Tmpfs") or {}
    if not isinstance(tmpfs, dict) or not all(isinstance(k, str) and k.startswith("/") for k in tmpfs):
        raise InvalidParameter("Tmpfs: expected an object of absolute paths")
    for path, options in tmpfs.items():
        validate_tmpfs_options(path, options)
    sysctls = host.get("Sysctls") or {}
    if not isinstance(sysctls, dict):
        raise InvalidParameter("Sysctls: expected an object")
    exposed = body.get("ExposedPorts") or {}
    if not isinstance(exposed, dict):
        raise InvalidParameter("ExposedPorts: expected an object")
    mounts = host.get("Mounts") or []
    if not isinstance(mounts, list) or not all(isinstance(m, dict) for m in mounts):
        raise InvalidParameter("Mounts: expected a list of objects")
    volumes = body.get("Volumes") or {}
    if not isinstance(volumes, dict):
        raise InvalidParameter("Volumes: expected an object")
    validate_healthcheck(body.get("Healthcheck"))
    stop_timeout = body.get("StopTimeout")
    if stop_timeout is not None and (not isinstance(stop_timeout, int) or isinstance(stop_timeout, bool)):
        raise InvalidParameter("StopTimeout: expected an integer")
    return CreateRequest(
        image=image,
        name=validate_name(name) if name else None,
        cmd=_strings(body, "Cmd", "", str_slice=True),
        entrypoint=_strings(body, "Entrypoint", "", str_slice=True),
        env=_strings(body, "Env", "") or [],
        user=_get(body, "User", str, "") or "",
        working_dir=_get(body, "WorkingDir", str, "") or "",
        hostname=_get(body, "Hostname", str, "") or "",
        domainname=_get(body, "Domainname", str, "") or "",
        labels={str(k): v for k, v in labels.items()},
        tty=bool(body.get("Tty")),
        open_stdin=bool(body.get("OpenStdin")),
        stdin_once=bool(body.get("StdinOnce")),
        stop_signal=stop_signal,
        stop_timeout=stop_timeout,
        exposed_ports=sorted(str(k) for k in exposed),
        auto_remove=bool(host.get("AutoRemove")),
        restart_policy=parse_restart_policy(host.get("RestartPolicy")),
        privileged=bool(host.get("Privileged")),
        cap_add=_caps(_strings(host, "CapAdd", "HostConfig.", str_slice=True), "CapAdd"),
        cap_drop=_caps(_strings(host, "CapDrop", "HostConfig.", str_slice=True), "CapDrop"),
        security_opt=_strings(host, "SecurityOpt", "HostConfig.") or [],
        readonly_rootfs=bool(host.get("ReadonlyRootfs")),
        memory=memory,
        memory_swap=swap,
        nano_cpus=_int(host, "NanoCpus", "HostConfig."),
        cpu_shares=_int(host, "CpuShares", "HostConfig."),
        cpu_period=_int(host, "CpuPeriod", "HostConfig.", 0, 1_000_000),
        cpu_quota=_get(host, "CpuQuota", int, "HostConfig.") or 0,
        cpuset_cpus=_get(host, "CpusetCpus", str, "HostConfig.") or "",
        pids_limit=_get(host, "PidsLimit", int, "HostConfig.") or 0,
        ulimits=ulimits,
        shm_size=_int(host, "ShmSize", "HostConfig."),
        tmpfs={str(k): str(v) for k, v in tmpfs.items()},
        binds=_strings(host, "Binds", "HostConfig.") or [],
        mounts=[dict(m) for m in mounts],
        volumes=[str(k) for k in volumes],
        volumes_from=_strings(host, "VolumesFrom", "HostConfig.") or [],
        init=bool(host.get("Init")),
        network_mode=_get(host, "NetworkMode", str, "HostConfig.") or "default",
        sysctls={str(k): str(v) for k, v in sysctls.items()},
        oom_score_adj=_int(host, "OomScoreAdj", "HostConfig.", -1000, 1000),
        networking=parse_networking(body, host, sorted(str(k) for k in exposed)),
    )
