"""Loading a project end to end: files found, read safely, interpolated, ``extends`` resolved, merged, validated
and normalised into :mod:`backend.compose.model`. Every refusal is a one-line ComposeError naming the file, the
service and the key."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

from backend.api.ports import PortSpecError, parse_expose, parse_port_spec
from backend.api.units import go_duration_seconds
from backend.compose.interpolation import InterpolationError, interpolate, parse_env_file
from backend.compose.loader import Sexagesimal, read_yaml, where
from backend.compose.merge import merge_values, normalise_service, strip_markers
from backend.compose.model import (
    BuildConfig,
    ComposeError,
    DependsOn,
    DependsOnCondition,
    Deploy,
    DeployPolicy,
    Healthcheck,
    NetworkConfig,
    PortConfig,
    Project,
    ResourceLimits,
    Service,
    ServiceNetwork,
    ServiceVolume,
    Ulimit,
    VolumeConfig,
)

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
_TOP_KEYS = frozenset({"version", "name", "services", "networks", "volumes", "secrets", "configs"})
_SERVICE_KEYS = frozenset(f.name for f in fields(Service)) - {"name"} | {
    "extends", "secrets", "configs", "logging", "links", "devices", "stop_grace_period", "labels", "pid", "ipc",
    "group_add", "cgroup_parent", "mem_reservation", "memswap_limit", "oom_score_adj", "cpu_shares", "annotations"}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)b?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_RESTART = re.compile(r"no|always|unless-stopped|on-failure(:\d+)?")


class _At:
    """Where a value is: file and key path; ``fail`` builds the error naming both."""

    def __init__(self, filename: str, path: tuple[str | int, ...]) -> None:
        self.filename, self.path = filename, path

    def __truediv__(self, key: str | int) -> _At:
        return _At(self.filename, (*self.path, key))

    def fail(self, message: str) -> ComposeError:
        return ComposeError(f"{where(self.filename, self.path)}: {message}")


def _string(value: Any, at: _At) -> str:
    if isinstance(value, Sexagesimal):
        raise at.fail(f"{value.text} was read by YAML as the number {int(value)} (base 60); quote it: "
                      f"\"{value.text}\"")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise at.fail(f"must be a string, not {_kind(value)}")
    return str(value)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", bool: "a boolean", type(None): "null"}.get(type(value),
                                                                                          type(value).__name__)


def _opt_str(value: Any, at: _At) -> str | None:
    return None if value is None else _string(value, at)


def _bool(value: Any, at: _At) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise at.fail(f"must be a boolean, not {value!r}")


def _int(value: Any, at: _At, minimum: int = 0) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise at.fail(f"must be an integer >= {minimum}, not {value!r}")
    return value


def _float(value: Any, at: _At) -> float:
    try:
        result = float(value) if not isinstance(value, bool) else -1.0
    except (TypeError, ValueError):
        result = -1.0
    if result < 0:
        raise at.fail(f"must be a positive number, not {value!r}")
    return result


def _strings(value: Any, at: _At) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise at.fail(f"must be a list of strings, not {_kind(value)}")
    return [_string(v, at / i) for i, v in enumerate(value)]


def _str_map(value: Any, at: _At) -> dict[str, str]:
    if not isinstance(value, dict):
        raise at.fail(f"must be a mapping, not {_kind(value)}")
    return {k: "" if v is None else _string(v, at / k) for k, v in value.items()}


def _command(value: Any, at: _At) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise at.fail(f"invalid command {value!r}: {exc}") from None
    return _strings(value, at)


def duration(value: Any, at: _At) -> float:
    """A Compose duration (``1m30s``, ``10s``, or a number of seconds) in seconds. Raises ComposeError."""
    if isinstance(value, (int, float)) and not isinstance(value, (bool, Sexagesimal)):
        return float(value)
    seconds = go_duration_seconds(value) if isinstance(value, str) else None
    if seconds is None:
        raise at.fail(f"invalid duration {value!r} (e.g. '1m30s', '10s', '500ms')")
    return seconds


def size(value: Any, at: _At) -> int:
    """A byte size (``512m``, ``1g``, ``1024``, ``1.5gb``) in bytes. Raises ComposeError."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match:
        raise at.fail(f"invalid size {value!r} (e.g. '512m', '1g')")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def _check_keys(value: Any, at: _At, allowed: frozenset[str] | set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise at.fail(f"must be a mapping, not {_kind(value)}")
    for key in value:
        if key not in allowed and not str(key).startswith("x-"):
            raise (at / key).fail("unknown key (not in the Compose specification)")
    return value


def _ports(value: Any, at: _At) -> list[PortConfig]:
    if not isinstance(value, list):
        raise at.fail(f"must be a list, not {_kind(value)}")
    result: list[PortConfig] = []
    for i, item in enumerate(value):
        item_at = at / i
        if isinstance(item, dict):
            item = _check_keys(item, item_at, {"target", "published", "host_ip", "protocol", "mode", "name",
                                               "app_protocol"})
            if "target" not in item:
                raise item_at.fail("a port needs a target")
            protocol = _string(item.get("protocol", "tcp"), item_at / "protocol").lower()
            if protocol not in ("tcp", "udp", "sctp"):
                raise (item_at / "protocol").fail(f"invalid protocol {protocol!r}")
            published = "" if item.get("published") is None else _string(item["published"], item_at / "published")
            result.append(PortConfig(_int(item["target"], item_at / "target", 1), published,
                                     _string(item.get("host_ip", ""), item_at / "host_ip"), protocol,
                                     _string(item.get("mode", "ingress"), item_at / "mode")))
            continue
        text = _string(item, item_at)
        try:
            specs = parse_port_spec(text)
        except PortSpecError as exc:
            raise item_at.fail(f"invalid port {text!r}: {exc}") from None
        if text.count(":") > 2 and not text.startswith("["):
            raise item_at.fail(f"invalid port {text!r}")
        result.extend(PortConfig(s.container_port, s.host_port, s.host_ip, s.protocol) for s in specs)
    return result


def _volumes(value: Any, at: _At, base: str) -> list[ServiceVolume]:
    if not isinstance(value, list):
        raise at.fail(f"must be a list, not {_kind(value)}")
    result: list[ServiceVolume] = []
    for i, item in enumerate(value):
        item_at = at / i
        if isinstance(item, dict):
            item = _check_keys(item, item_at, {"type", "source", "target", "read_only", "bind", "volume", "tmpfs",
                                               "consistency"})
            kind = _string(item.get("type", "volume"), item_at / "type")
            if kind not in ("volume", "bind", "tmpfs", "npipe", "cluster", "image"):
                raise (item_at / "type").fail(f"invalid mount type {kind!r}")
            if "target" not in item:
                raise item_at.fail("a mount needs a target")
            bind = _check_keys(item.get("bind") or {}, item_at / "bind", {"propagation", "create_host_path",
                                                                          "selinux"})
            vol = _check_keys(item.get("volume") or {}, item_at / "volume", {"nocopy", "subpath"})
            tmpfs = _check_keys(item.get("tmpfs") or {}, item_at / "tmpfs", {"size", "mode"})
            source = _string(item.get("source", ""), item_at / "source")
            if kind == "bind":
                source = _host_path(source, base)
            result.append(ServiceVolume(
                kind, _string(item["target"], item_at / "target"), source,
                _bool(item.get("read_only", False), item_at / "read_only"),
                _opt_str(bind.get("propagation"), item_at / "bind"),
                _bool(bind.get("create_host_path", True), item_at / "bind"), _opt_str(bind.get("selinux"), item_at),
                _bool(vol.get("nocopy", False), item_at / "volume"), _opt_str(vol.get("subpath"), item_at),
                size(tmpfs["size"], item_at / "tmpfs" / "size") if "size" in tmpfs else None,
                _int(tmpfs["mode"], item_at / "tmpfs" / "mode") if "mode" in tmpfs else None,
                _opt_str(item.get("consistency"), item_at)))
            continue
        text = _string(item, item_at)
        parts = text.split(":")
        if not 1 <= len(parts) <= 3 or not all(parts[:2]):
            raise item_at.fail(f"invalid volume {text!r}")
        if len(parts) == 1:
            result.append(ServiceVolume("volume", parts[0]))
            continue
        mode = parts[2].split(",") if len(parts) == 3 else []
        if any(m not in ("ro", "rw", "z", "Z", "nocopy", "shared", "rshared", "slave", "rslave", "private",
                         "rprivate") for m in mode):
            raise item_at.fail(f"invalid volume mode in {text!r}")
        source = parts[0]
        is_path = source.startswith((".", "/", "~"))
        result.append(ServiceVolume("bind" if is_path else "volume", parts[1],
                                    _host_path(source, base) if is_path else source, "ro" in mode,
                                    volume_nocopy="nocopy" in mode))
    return result


def _host_path(path: str, base: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _healthcheck(value: Any, at: _At) -> Healthcheck:
    item = _check_keys(value, at, {"test", "interval", "timeout", "retries", "start_period", "start_interval",
                                   "disable"})
    test = item.get("test")
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    elif test is not None:
        test = _strings(test, at / "test")
        if not test or test[0] not in ("CMD", "CMD-SHELL", "NONE"):
            raise (at / "test").fail("must be a string or a list starting with CMD, CMD-SHELL or NONE")

    def opt_duration(key: str) -> float | None:
        return duration(item[key], at / key) if item.get(key) is not None else None

    disable = _bool(item.get("disable", False), at / "disable") or test == ["NONE"]
    return Healthcheck(test, opt_duration("interval"), opt_duration("timeout"),
                       _int(item["retries"], at / "retries") if item.get("retries") is not None else None,
                       opt_duration("start_period"), opt_duration("start_interval"), disable)


def _limits(value: Any, at: _At) -> ResourceLimits:
    item = _check_keys(value or {}, at, {"cpus", "memory", "pids", "devices", "generic_resources"})
    return ResourceLimits(_float(item["cpus"], at / "cpus") if "cpus" in item else None,
                          size(item["memory"], at / "memory") if "memory" in item else None,
                          _int(item["pids"], at / "pids") if "pids" in item else None)


def _deploy(value: Any, at: _At) -> Deploy:
    item = _check_keys(value, at, {"replicas", "resources", "labels", "mode", "restart_policy", "placement",
                                   "update_config", "rollback_config", "endpoint_mode"})
    resources = _check_keys(item.get("resources") or {}, at / "resources", {"limits", "reservations"})
    placement = _check_keys(item.get("placement") or {}, at / "placement",
                            {"constraints", "preferences", "max_replicas_per_node"})
    preferences = []
    for index, pref in enumerate(placement.get("preferences") or []):
        preferences.append(_string(_check_keys(pref, at / "placement" / "preferences" / index, {"spread"})
                                   .get("spread"), at / "placement" / "preferences" / index / "spread"))
    mode = _string(item.get("mode", "replicated"), at / "mode")
    if mode not in ("replicated", "global"):
        raise (at / "mode").fail("must be replicated or global")
    return Deploy(_int(item["replicas"], at / "replicas") if item.get("replicas") is not None else None,
                  _limits(resources.get("limits"), at / "resources" / "limits"),
                  _limits(resources.get("reservations"), at / "resources" / "reservations"),
                  _str_map(item.get("labels") or {}, at / "labels"), mode,
                  _policy(item["restart_policy"], at / "restart_policy") if item.get("restart_policy") else None,
                  _policy(item["update_config"], at / "update_config") if item.get("update_config") else None,
                  _strings(placement.get("constraints") or [], at / "placement" / "constraints"), preferences,
                  _int(placement["max_replicas_per_node"], at / "placement" / "max_replicas_per_node")
                  if placement.get("max_replicas_per_node") is not None else None)


def _policy(value: Any, at: _At) -> DeployPolicy:
    """``restart_policy`` or ``update_config``: durations as Go durations, counts as integers."""
    item = _check_keys(value, at, {"condition", "delay", "max_attempts", "window", "parallelism",
                                   "failure_action", "monitor", "max_failure_ratio", "order"})

    def get(key: str, parse: Callable[[Any, _At], Any]) -> Any:
        return parse(item[key], at / key) if item.get(key) is not None else None

    return DeployPolicy(get("condition", _string), get("delay", duration), get("max_attempts", _int),
                        get("window", duration), get("parallelism", _int), get("failure_action", _string),
                        get("monitor", duration), get("max_failure_ratio", _float), get("order", _string))


def _build(value: Any, at: _At, base: str) -> BuildConfig:
    if isinstance(value, str):
        value = {"context": value}
    item = _check_keys(value, at, {"context", "dockerfile", "args", "target", "labels", "network", "no_cache",
                                   "pull", "extra_hosts", "shm_size", "cache_from", "platforms", "tags"})
    context = _string(item.get("context", "."), at / "context")
    if "://" not in context and not context.startswith("git@"):
        context = _host_path(context, base)
    return BuildConfig(context, _string(item.get("dockerfile", "Dockerfile"), at / "dockerfile"),
                       {k: None if v is None else _string(v, at / "args" / k)
                        for k, v in (item.get("args") or {}).items()},
                       _opt_str(item.get("target"), at / "target"), _str_map(item.get("labels") or {}, at / "labels"),
                       _opt_str(item.get("network"), at / "network"),
                       _bool(item.get("no_cache", False), at / "no_cache"), _bool(item.get("pull", False), at / "pull"),
                       _strings(item.get("extra_hosts") or [], at / "extra_hosts"),
                       size(item["shm_size"], at / "shm_size") if item.get("shm_size") is not None else None)


def _depends_on(value: dict[str, Any], at: _At) -> dict[str, DependsOn]:
    result: dict[str, DependsOn] = {}
    for name, item in value.items():
        item = _check_keys(item or {}, at / name, {"condition", "restart", "required"})
        condition = item.get("condition", DependsOnCondition.STARTED.value)
        try:
            cond = DependsOnCondition(condition)
        except ValueError:
            raise (at / name / "condition").fail(f"invalid condition {condition!r} (service_started, "
                                                 "service_healthy or service_completed_successfully)") from None
        result[name] = DependsOn(cond, _bool(item.get("restart", False), at / name / "restart"),
                                 _bool(item.get("required", True), at / name / "required"))
    return result


def _networks(value: dict[str, Any], at: _At) -> dict[str, ServiceNetwork]:
    result: dict[str, ServiceNetwork] = {}
    for name, item in value.items():
        item = _check_keys(item or {}, at / name, {"aliases", "ipv4_address", "ipv6_address", "priority",
                                                   "link_local_ips", "mac_address"})
        result[name] = ServiceNetwork(_strings(item.get("aliases") or [], at / name / "aliases"),
                                      _opt_str(item.get("ipv4_address"), at / name / "ipv4_address"),
                                      _opt_str(item.get("ipv6_address"), at / name / "ipv6_address"),
                                      _int(item.get("priority", 0), at / name / "priority"))
    return result


def _ulimits(value: Any, at: _At) -> dict[str, Ulimit]:
    result: dict[str, Ulimit] = {}
    for name, item in _check_keys(value, at, set(value) if isinstance(value, dict) else set()).items():
        if isinstance(item, dict):
            item = _check_keys(item, at / name, {"soft", "hard"})
            if "soft" not in item or "hard" not in item:
                raise (at / name).fail("needs soft and hard")
            result[name] = Ulimit(_int(item["soft"], at / name / "soft", -1), _int(item["hard"], at / name / "hard",
                                                                                   -1))
        else:
            result[name] = Ulimit(_int(item, at / name, -1), _int(item, at / name, -1))
    return result


def _service(name: str, raw: dict[str, Any], at: _At, base: str, env: Mapping[str, str]) -> Service:
    _check_keys(raw, at, _SERVICE_KEYS)
    if "image" not in raw and "build" not in raw:
        raise at.fail("has neither an image nor a build section")
    env_files = [_host_path(f, base) for f in _strings(raw.get("env_file") or [], at / "env_file")]
    environment: dict[str, str | None] = {}
    for path in env_files:
        try:
            with open(path, encoding="utf-8") as handle:
                environment.update(parse_env_file(handle.read(), path, env))
        except OSError as exc:
            raise (at / "env_file").fail(f"cannot read {path}: {exc.strerror}") from None
        except InterpolationError as exc:
            raise (at / "env_file").fail(str(exc)) from None
    environment.update({k: None if v is None else _string(v, at / "environment" / k)
                        for k, v in (raw.get("environment") or {}).items()})
    restart = _opt_str(raw.get("restart"), at / "restart")
    if restart is not None and not _RESTART.fullmatch(restart):
        raise (at / "restart").fail(f"invalid restart policy {restart!r} (no, always, on-failure[:N], "
                                    "unless-stopped)")
    expose: list[str] = []
    for i, item in enumerate(raw.get("expose") or []):
        try:
            expose.extend(parse_expose(_string(item, at / "expose" / i)))
        except PortSpecError as exc:
            raise (at / "expose" / i).fail(str(exc)) from None

    def opt(key: str, parse: Callable[[Any, _At], Any]) -> Any:
        return parse(raw[key], at / key) if raw.get(key) is not None else None

    def strings(key: str) -> list[str]:
        return _strings(raw.get(key) or [], at / key)

    def flag(key: str) -> bool:
        return _bool(raw.get(key, False), at / key)

    return Service(
        name, image=opt("image", _string), build=opt("build", lambda v, a: _build(v, a, base)),
        command=opt("command", _command), entrypoint=opt("entrypoint", _command), environment=environment,
        env_file=env_files, ports=_ports(raw.get("ports") or [], at / "ports"), expose=expose,
        volumes=_volumes(raw.get("volumes") or [], at / "volumes", base), tmpfs=strings("tmpfs"),
        networks=_networks(raw.get("networks") or {}, at / "networks"), network_mode=opt("network_mode", _string),
        depends_on=_depends_on(raw.get("depends_on") or {}, at / "depends_on"),
        healthcheck=opt("healthcheck", _healthcheck), restart=restart, deploy=opt("deploy", _deploy),
        scale=opt("scale", _int), labels=_str_map(raw.get("labels") or {}, at / "labels"),
        container_name=opt("container_name", _string), working_dir=opt("working_dir", _string),
        user=opt("user", _string), hostname=opt("hostname", _string), domainname=opt("domainname", _string),
        init=opt("init", _bool), tty=flag("tty"), stdin_open=flag("stdin_open"), privileged=flag("privileged"),
        read_only=flag("read_only"), stop_signal=opt("stop_signal", _string),
        stop_grace_period=opt("stop_grace_period", duration), profiles=strings("profiles"),
        extra_hosts=strings("extra_hosts"), dns=strings("dns"), dns_search=strings("dns_search"),
        dns_opt=strings("dns_opt"), cap_add=strings("cap_add"), cap_drop=strings("cap_drop"),
        security_opt=strings("security_opt"), ulimits=_ulimits(raw.get("ulimits") or {}, at / "ulimits"),
        sysctls=_str_map(raw.get("sysctls") or {}, at / "sysctls"), mem_limit=opt("mem_limit", size),
        cpus=opt("cpus", _float), pids_limit=opt("pids_limit", _int), shm_size=opt("shm_size", size),
        pull_policy=opt("pull_policy", _string), platform=opt("platform", _string), runtime=opt("runtime", _string))


def _resource(cls: type[NetworkConfig] | type[VolumeConfig], key: str, raw: Any, at: _At, project: str,
              allowed: set[str]) -> Any:
    item = _check_keys(raw or {}, at, allowed | {"name", "driver", "driver_opts", "labels", "external"})
    external = item.get("external", False)
    if isinstance(external, dict):
        item = {**item, "name": external.get("name", item.get("name"))}
        external = True
    external = _bool(external, at / "external")
    name = _opt_str(item.get("name"), at / "name") or (key if external else f"{project}_{key}")
    driver = _opt_str(item.get("driver"), at / "driver")
    driver_opts = _str_map(item.get("driver_opts") or {}, at / "driver_opts")
    labels = _str_map(item.get("labels") or {}, at / "labels")
    if cls is VolumeConfig:
        return VolumeConfig(name, driver, driver_opts, labels, external)
    ipam = _check_keys(item.get("ipam") or {}, at / "ipam", {"driver", "config", "options"})
    return NetworkConfig(name, driver, driver_opts, labels, external,
                         internal=_bool(item.get("internal", False), at / "internal"),
                         attachable=_bool(item.get("attachable", False), at / "attachable"),
                         enable_ipv6=_bool(item.get("enable_ipv6", False), at / "enable_ipv6"),
                         ipam_driver=_opt_str(ipam.get("driver"), at / "ipam" / "driver"),
                         ipam_config=[_str_map(c, at / "ipam" / "config" / i)
                                      for i, c in enumerate(ipam.get("config") or [])])


def normalise_project_name(name: str) -> str:
    """Compose's normalisation: lowercase, only ``[a-z0-9_-]`` kept; empty or not starting with a letter or digit
    after that is a ComposeError."""
    normalised = re.sub(r"[^a-z0-9_-]", "", name.lower())
    if not _PROJECT_NAME.fullmatch(normalised):
        raise ComposeError(f"invalid project name {name!r}: it must contain only lowercase letters, digits, "
                           "dashes and underscores, and start with a letter or digit")
    return normalised


def find_files(directory: str) -> list[str]:
    """The default Compose file in ``directory`` or its nearest parent, plus its ``.override`` sibling.
    Raises ComposeError when there is none."""
    current = os.path.abspath(directory)
    while True:
        for name in DEFAULT_FILES:
            if os.path.isfile(path := os.path.join(current, name)):
                stem, ext = os.path.splitext(path)
                overrides = [o for o in (f"{stem}.override{ext}",) if os.path.isfile(o)]
                return [path, *overrides]
        parent = os.path.dirname(current)
        if parent == current:
            raise ComposeError(f"no configuration file provided: none of {', '.join(DEFAULT_FILES)} found in "
                               f"{directory} or its parents")
        current = parent


class _FileReader:
    """Reads, interpolates and normalises files once each; resolves ``extends`` across them."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.cache: dict[str, dict[str, Any]] = {}
        self.warnings: list[str] = []

    def read(self, path: str) -> dict[str, Any]:
        if path in self.cache:
            return self.cache[path]
        raw: dict[str, Any] = interpolate(read_yaml(path), self.env, (),
                                          lambda p, msg: ComposeError(f"{where(path, p)}: {msg}"))
        _check_keys(raw, _At(path, ()), _TOP_KEYS)
        if "version" in raw:
            self.warnings.append(f"{path}: the attribute `version` is obsolete, it will be ignored")
        services = raw.get("services") or {}
        if not isinstance(services, dict):
            raise _At(path, ("services",)).fail("must be a mapping of services")
        raw["services"] = {str(n): normalise_service(s, path, str(n)) for n, s in services.items()}
        self.cache[path] = raw
        return raw

    def service(self, path: str, name: str, chain: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
        """Service ``name`` of file ``path`` with its ``extends`` resolved; paths rebased to ``path``'s
        directory-independent absolute form."""
        if (path, name) in chain:
            raise _At(path, ("services", name, "extends")).fail("circular extends")
        services = self.read(path)["services"]
        if name not in services:
            raise ComposeError(f"{path}: extends: no service {name!r}")
        service = dict(services[name])
        extends = service.pop("extends", None)
        if extends is None:
            return service
        at = _At(path, ("services", name, "extends"))
        if isinstance(extends, str):
            extends = {"service": extends}
        extends = _check_keys(extends, at, {"service", "file"})
        if "service" not in extends:
            raise at.fail("needs a service")
        base_path = _host_path(_string(extends["file"], at / "file"), os.path.dirname(path)) \
            if "file" in extends else path
        base = self.service(base_path, _string(extends["service"], at / "service"), (*chain, (path, name)))
        if os.path.dirname(base_path) != os.path.dirname(path):
            base = _rebase(base, os.path.dirname(base_path))
        merged: dict[str, Any] = merge_values(base, service)
        return merged


def _rebase(service: dict[str, Any], directory: str) -> dict[str, Any]:
    """Relative build context, env_file and bind sources made absolute against ``directory``."""
    result = dict(service)
    build = result.get("build")
    if isinstance(build, str):
        result["build"] = _host_path(build, directory)
    elif isinstance(build, dict) and isinstance(build.get("context", "."), str):
        result["build"] = {**build, "context": _host_path(build.get("context", "."), directory)}
    if isinstance(result.get("env_file"), list):
        result["env_file"] = [_host_path(f, directory) if isinstance(f, str) else f for f in result["env_file"]]
    if isinstance(result.get("volumes"), list):
        result["volumes"] = [_rebase_volume(v, directory) for v in result["volumes"]]
    return result


def _rebase_volume(volume: Any, directory: str) -> Any:
    if isinstance(volume, str) and volume.startswith("."):
        source, sep, rest = volume.partition(":")
        return _host_path(source, directory) + sep + rest
    if isinstance(volume, dict) and volume.get("type") == "bind" and str(volume.get("source", "")).startswith("."):
        return {**volume, "source": _host_path(volume["source"], directory)}
    return volume


def load(files: Sequence[str | os.PathLike[str]], *, project_name: str | None,
         environment: Mapping[str, str] | None, working_dir: str | os.PathLike[str] | None,
         profiles: Sequence[str]) -> Project:
    """The implementation of :func:`backend.compose.model.load_project` (see there)."""
    paths = [os.path.abspath(os.fspath(f)) for f in files] or find_files(os.fspath(working_dir or os.getcwd()))
    project_dir = os.path.abspath(os.fspath(working_dir)) if working_dir else os.path.dirname(paths[0])
    process_env = dict(os.environ if environment is None else environment)
    env = dict(process_env)
    dotenv = os.path.join(project_dir, ".env")
    if os.path.isfile(dotenv):
        try:
            with open(dotenv, encoding="utf-8") as handle:
                env = {**parse_env_file(handle.read(), dotenv, process_env), **process_env}
        except (OSError, UnicodeDecodeError, InterpolationError) as exc:
            raise ComposeError(f"{dotenv}: {exc}") from None
    reader = _FileReader(env)
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for path in paths:
        raw = dict(reader.read(path))
        raw["services"] = {name: reader.service(path, name) for name in raw["services"]}
        origin.update(dict.fromkeys(raw["services"], path))
        merged = merge_values(merged, raw)
    merged = strip_markers(merged)
    name = project_name or env.get("COMPOSE_PROJECT_NAME") or merged.get("name") or os.path.basename(project_dir)
    name = normalise_project_name(_string(name, _At(paths[0], ("name",))))
    services = {n: _service(n, s, _At(origin[n], ("services", n)), project_dir, env)
                for n, s in (merged.get("services") or {}).items()}
    networks = {k: _resource(NetworkConfig, k, v, _At(paths[-1], ("networks", k)), name,
                             {"internal", "attachable", "enable_ipv6", "ipam"})
                for k, v in _check_keys(merged.get("networks") or {}, _At(paths[-1], ("networks",)),
                                        set(merged.get("networks") or {})).items()}
    volumes = {k: _resource(VolumeConfig, k, v, _At(paths[-1], ("volumes", k)), name, set())
               for k, v in _check_keys(merged.get("volumes") or {}, _At(paths[-1], ("volumes",)),
                                       set(merged.get("volumes") or {})).items()}
    _check_references(services, networks, volumes, origin)
    if any(not s.networks and s.network_mode is None for s in services.values()) or any(
            "default" in s.networks for s in services.values()):
        networks.setdefault("default", NetworkConfig(f"{name}_default"))
    # A service that names no network (and no network_mode) is on the project's default network.
    services = {n: s if s.networks or s.network_mode is not None else
                replace(s, networks={"default": ServiceNetwork()}) for n, s in services.items()}
    active = {*profiles, *filter(None, env.get("COMPOSE_PROFILES", "").split(","))}
    enabled = {n: s for n, s in services.items() if not s.profiles or "*" in active or active & set(s.profiles)}
    return Project(name, project_dir, paths, enabled, networks, volumes, env, reader.warnings,
                   {n: s for n, s in services.items() if n not in enabled})


def _check_references(services: dict[str, Service], networks: dict[str, NetworkConfig],
                      volumes: dict[str, VolumeConfig], origin: dict[str, str]) -> None:
    for name, service in services.items():
        at = _At(origin[name], ("services", name))
        for dep, spec in service.depends_on.items():
            if dep not in services and spec.required:
                raise (at / "depends_on").fail(f"depends on undefined service {dep!r}")
        for net in service.networks:
            if net not in networks and net != "default":
                raise (at / "networks").fail(f"service refers to undefined network {net!r}")
        for i, vol in enumerate(service.volumes):
            if vol.type == "volume" and vol.source and vol.source not in volumes:
                raise (at / "volumes" / i).fail(f"service refers to undefined volume {vol.source!r}")
