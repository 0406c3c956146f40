"""``run``/``create`` flags and the ``POST /containers/create`` body they make, as the docker CLI builds it.

Every parser raises UsageError with docker's wording for a value it cannot use; what only the engine
can judge (names, signals, capabilities) is passed through and the engine's answer is shown.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from backend.api import ports
from backend.api.units import go_duration_seconds
from backend.cli.context import ArgumentParser, UsageError

_RAM = re.compile(r"^(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
RESTART_NAMES = ("no", "always", "unless-stopped", "on-failure")


def parse_bytes(text: str, flag: str) -> int:
    """docker's ``RAMInBytes``: ``512m``, ``1g``, ``1.5GiB``, ``100`` (binary units). Raises UsageError."""
    match = _RAM.match(text.strip())
    if match is None:
        raise UsageError(f"invalid argument {text!r} for \"{flag}\" flag: invalid size: '{text}'")
    return int(float(match[1]) * _UNITS[(match[2] or "").lower()])


def parse_memory_swap(text: str) -> int:
    """``--memory-swap``: a size or -1 (unlimited)."""
    return -1 if text.strip() == "-1" else parse_bytes(text, "--memory-swap")


def parse_cpus(text: str) -> int:
    """``--cpus 1.5`` -> NanoCpus."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"invalid argument {text!r} for \"--cpus\" flag: failed to parse {text} as a "
                         "rational number") from None
    if value < 0:
        raise UsageError(f"invalid argument {text!r} for \"--cpus\" flag: must be positive")
    return int(value * 1e9)


def parse_restart(text: str) -> dict[str, Any]:
    """``no``, ``always``, ``unless-stopped``, ``on-failure[:N]`` -> RestartPolicy. Raises UsageError."""
    name, _, count = text.partition(":")
    if name not in RESTART_NAMES:
        raise UsageError(f"invalid restart policy '{text}': use no, always, unless-stopped or on-failure[:N]")
    if count and (name != "on-failure" or not count.isdigit()):
        raise UsageError(f"invalid restart policy '{text}': only on-failure takes a maximum retry count")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def parse_ulimit(text: str) -> dict[str, Any]:
    """``nofile=1024[:2048]`` -> ``{"Name", "Soft", "Hard"}``."""
    name, sep, limits = text.partition("=")
    soft, _, hard = limits.partition(":")
    try:
        soft_value = int(soft)
        hard_value = int(hard) if hard else soft_value
    except ValueError:
        raise UsageError(f"invalid argument {text!r} for \"--ulimit\" flag: expected name=soft[:hard]") from None
    if not sep or not name:
        raise UsageError(f"invalid argument {text!r} for \"--ulimit\" flag: expected name=soft[:hard]")
    return {"Name": name, "Soft": soft_value, "Hard": hard_value}


def parse_publish(specs: Sequence[str]) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, str]]]]:
    """``-p [ip:][host_port:]container_port[/proto]`` (ranges too) -> (ExposedPorts, PortBindings), as the
    docker CLI builds them. Raises UsageError with Docker's message."""
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in specs:
        try:
            mappings = ports.parse_port_spec(spec)
        except ports.PortSpecError as exc:
            raise UsageError(str(exc)) from None
        for mapping in mappings:
            exposed[mapping.key] = {}
            bindings.setdefault(mapping.key, []).append({"HostIp": mapping.host_ip, "HostPort": mapping.host_port})
    return exposed, bindings


def parse_expose(specs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--expose PORT[-END][/proto]`` values -> ExposedPorts. Raises UsageError with the docker CLI's message."""
    try:
        return {key: {} for spec in specs for key in ports.parse_expose(spec)}
    except ports.PortSpecError as exc:
        raise UsageError(str(exc)) from None


def parse_volumes(specs: Sequence[str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """``-v`` values -> (Binds, Volumes): ``src:dst[:opts]`` is a bind or named volume, ``/dst`` anonymous."""
    binds: list[str] = []
    anonymous: dict[str, dict[str, Any]] = {}
    for spec in specs:
        parts = spec.split(":")
        if len(parts) == 1:
            if not spec.startswith("/"):
                raise UsageError(f"invalid volume specification: '{spec}': the container path must be absolute")
            anonymous[spec] = {}
            continue
        if len(parts) > 3 or not parts[1].startswith("/") or not parts[0]:
            raise UsageError(f"invalid volume specification: '{spec}'")
        source = parts[0]
        if source.startswith((".", "~")):
            source = str(Path(source).expanduser().resolve())
        binds.append(":".join([source, *parts[1:]]))
    return binds, anonymous


def parse_mount(spec: str) -> dict[str, Any]:
    """``--mount type=bind,source=/a,target=/b[,readonly]`` -> one HostConfig.Mounts entry."""
    mount: dict[str, Any] = {"Type": "volume"}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if key in ("type",):
            mount["Type"] = value
        elif key in ("source", "src"):
            mount["Source"] = value
        elif key in ("target", "destination", "dst"):
            mount["Target"] = value
        elif key in ("readonly", "ro"):
            mount["ReadOnly"] = not sep or value.lower() in ("1", "true")
        elif key == "tmpfs-size":
            mount.setdefault("TmpfsOptions", {})["SizeBytes"] = parse_bytes(value, "--mount")
        elif key == "tmpfs-mode":
            mount.setdefault("TmpfsOptions", {})["Mode"] = int(value, 8)
        elif key == "bind-propagation":
            mount["BindOptions"] = {"Propagation": value}
        else:
            raise UsageError(f"invalid field '{key}' in --mount '{spec}'")
    if mount["Type"] not in ("bind", "volume", "tmpfs"):
        raise UsageError(f"invalid mount type '{mount['Type']}' in --mount '{spec}'")
    if not mount.get("Target"):
        raise UsageError(f"invalid --mount '{spec}': target is required")
    return mount


def parse_env(values: Sequence[str], files: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """``--env-file`` lines then ``-e`` values; ``NAME`` alone takes the value from the environment
    (and is left out when it is not set there). Raises UsageError for an unreadable file."""
    items: list[str] = []
    for name in files:
        try:
            lines = Path(name).read_text().splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read env file {name}: {exc.strerror}") from None
        items += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    items += values
    env: list[str] = []
    for item in items:
        key, sep, _ = item.partition("=")
        if not key:
            raise UsageError(f"invalid environment variable: {item}")
        if sep:
            env.append(item)
        elif key in environ:
            env.append(f"{key}={environ[key]}")
    return env


def parse_labels(values: Sequence[str]) -> dict[str, str]:
    """``-l k=v`` (``k`` alone is an empty value)."""
    labels: dict[str, str] = {}
    for item in values:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid label: {item}")
        labels[key] = value
    return labels


def parse_tmpfs(values: Sequence[str]) -> dict[str, str]:
    """``--tmpfs /path[:opts]``."""
    tmpfs: dict[str, str] = {}
    for item in values:
        path, _, options = item.partition(":")
        if not path.startswith("/"):
            raise UsageError(f"invalid --tmpfs '{item}': the path must be absolute")
        tmpfs[path] = options
    return tmpfs


def parse_go_duration(text: str, flag: str) -> int:
    """A Go duration flag value (``5s``, ``1m30s``, ``0``, ``-1s``) in nanoseconds. Raises UsageError."""
    magnitude = text[1:] if text[:1] in "+-" and text[1:] else text
    seconds = 0.0 if magnitude == "0" else go_duration_seconds(magnitude)
    if seconds is None:
        raise UsageError(f'invalid argument "{text}" for "{flag}" flag: time: invalid duration "{text}"')
    return round(seconds * 1e9) * (-1 if text.startswith("-") else 1)


HEALTH_DURATIONS = {"Interval": "--health-interval", "Timeout": "--health-timeout",
                    "StartPeriod": "--health-start-period"}


def parse_healthcheck(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--health-*`` and ``--no-healthcheck`` -> ``Healthcheck`` (None without them), as the docker CLI
    builds it. Raises UsageError with its messages."""
    durations = {key: parse_go_duration(getattr(args, flag[2:].replace("-", "_")), flag)
                 for key, flag in HEALTH_DURATIONS.items()}
    wanted = bool(args.health_cmd or args.health_retries or any(durations.values()))
    if args.no_healthcheck:
        if wanted:
            raise UsageError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not wanted:
        return None
    for key, flag in HEALTH_DURATIONS.items():
        if durations[key] < 0:
            raise UsageError(f"{flag} cannot be negative")
    if args.health_retries < 0:
        raise UsageError("--health-retries cannot be negative")
    return {"Test": ["CMD-SHELL", args.health_cmd] if args.health_cmd else None, **durations,
            "Retries": args.health_retries}


def _endpoints(network: str, aliases: Sequence[str], ip: str) -> dict[str, Any]:
    """``EndpointsConfig`` for ``--network`` with ``--network-alias`` and ``--ip`` (empty without them)."""
    if not aliases and not ip:
        return {}
    return {network: {"Aliases": list(aliases) or None, "IPAMConfig": {"IPv4Address": ip} if ip else None}}


def add_container_flags(parser: ArgumentParser) -> None:
    """The flags ``run`` and ``create`` share."""
    add = parser.add_argument
    add("-a", "--attach", action="append", default=[], choices=("stdin", "stdout", "stderr"),
        help="Attach to STDIN, STDOUT or STDERR")
    add("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    add("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    add("--rm", action="store_true", help="Automatically remove the container when it exits")
    add("--name", help="Assign a name to the container")
    add("-e", "--env", action="append", default=[], help="Set environment variables")
    add("--env-file", action="append", default=[], help="Read in a file of environment variables")
    add("-l", "--label", action="append", default=[], help="Set meta data on a container")
    add("-w", "--workdir", default="", help="Working directory inside the container")
    add("-u", "--user", default="", help="Username or UID (format: <name|uid>[:<group|gid>])")
    add("-h", "--hostname", default="", help="Container host name")
    add("--help", action="help", help="Print usage")
    add("--entrypoint", help="Overwrite the default ENTRYPOINT of the image")
    add("-p", "--publish", action="append", default=[], help="Publish a container's port(s) to the host")
    add("-P", "--publish-all", action="store_true", help="Publish all exposed ports to random ports")
    add("--expose", action="append", default=[], help="Expose a port or a range of ports")
    add("-v", "--volume", action="append", default=[], help="Bind mount a volume")
    add("--mount", action="append", default=[], help="Attach a filesystem mount to the container")
    add("--network", "--net", default="default", help="Connect a container to a network")
    add("--network-alias", "--net-alias", action="append", default=[],
        help="Add network-scoped alias for the container")
    add("--ip", default="", help="IPv4 address (e.g., 172.30.100.104)")
    add("--restart", default="no", help="Restart policy to apply when a container exits")
    add("-m", "--memory", help="Memory limit")
    add("--memory-swap", help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
    add("--cpus", help="Number of CPUs")
    add("-c", "--cpu-shares", type=int, default=0, help="CPU shares (relative weight)")
    add("--pids-limit", type=int, default=0, help="Tune container pids limit (set -1 for unlimited)")
    add("--ulimit", action="append", default=[], help="Ulimit options")
    add("--shm-size", help="Size of /dev/shm")
    add("--tmpfs", action="append", default=[], help="Mount a tmpfs directory")
    add("--read-only", action="store_true", help="Mount the container's root filesystem as read only")
    add("--privileged", action="store_true", help="Give extended privileges to this container")
    add("--cap-add", action="append", default=[], help="Add Linux capabilities")
    add("--cap-drop", action="append", default=[], help="Drop Linux capabilities")
    add("--security-opt", action="append", default=[], help="Security Options")
    add("--init", action="store_true", help="Run an init inside the container")
    add("--stop-signal", help="Signal to stop the container")
    add("--stop-timeout", type=int, help="Timeout (in seconds) to stop a container")
    add("--pull", default="missing", choices=("missing", "always", "never"),
        help="Pull image before running (always, missing, never)")
    add("--platform", help="Set platform if server is multi-platform capable")
    add("--add-host", action="append", default=[], help="Add a custom host-to-IP mapping (host:ip)")
    add("--dns", action="append", default=[], help="Set custom DNS servers")
    add("--dns-search", action="append", default=[], help="Set custom DNS search domains")
    add("--dns-option", "--dns-opt", action="append", default=[], help="Set DNS options")
    add("--cgroup-parent", default="", help="Optional parent cgroup for the container")
    add("--health-cmd", default="", help="Command to run to check health")
    add("--health-interval", default="0", help="Time between running the check (ms|s|m|h) (default 0s)")
    add("--health-timeout", default="0", help="Maximum time to allow one check to run (ms|s|m|h) (default 0s)")
    add("--health-start-period", default="0",
        help="Start period for the container to initialize before starting health-retries countdown (ms|s|m|h)")
    add("--health-retries", type=int, default=0, help="Consecutive failures needed to report unhealthy")
    add("--no-healthcheck", action="store_true", help="Disable any container-specified HEALTHCHECK")
    add("image", help="The image to run")
    add("command", nargs=argparse.REMAINDER, help="The command and its arguments")


def build_create_body(args: argparse.Namespace, environ: Mapping[str, str] | None = None,
                      *, detach: bool = False) -> dict[str, Any]:
    """The ``POST /containers/create`` body for the ``run``/``create`` flags. Raises UsageError."""
    environ = os.environ if environ is None else environ
    attach = set(args.attach)
    if not attach and not detach:
        attach = {"stdout", "stderr"} | ({"stdin"} if args.interactive else set())
    exposed, bindings = parse_publish(args.publish)
    exposed.update(parse_expose(args.expose))
    binds, anonymous = parse_volumes(args.volume)
    host_config: dict[str, Any] = {
        "AutoRemove": args.rm, "NetworkMode": args.network, "RestartPolicy": parse_restart(args.restart),
        "Binds": binds or None, "PortBindings": bindings, "PublishAllPorts": args.publish_all,
        "Mounts": [parse_mount(m) for m in args.mount] or None,
        "Memory": parse_bytes(args.memory, "--memory") if args.memory else 0,
        "MemorySwap": parse_memory_swap(args.memory_swap) if args.memory_swap else 0,
        "NanoCpus": parse_cpus(args.cpus) if args.cpus else 0, "CpuShares": args.cpu_shares,
        "PidsLimit": args.pids_limit or None, "Ulimits": [parse_ulimit(u) for u in args.ulimit] or None,
        "ShmSize": parse_bytes(args.shm_size, "--shm-size") if args.shm_size else 0,
        "Tmpfs": parse_tmpfs(args.tmpfs) or None, "ReadonlyRootfs": args.read_only,
        "Privileged": args.privileged, "CapAdd": args.cap_add or None, "CapDrop": args.cap_drop or None,
        "SecurityOpt": args.security_opt or None, "Init": True if args.init else None,
        "ExtraHosts": args.add_host or None, "Dns": args.dns, "DnsSearch": args.dns_search,
        "DnsOptions": args.dns_option, "CgroupParent": args.cgroup_parent,
    }
    if args.rm and args.restart != "no":
        raise UsageError("conflicting options: cannot specify both --restart and --rm")
    body: dict[str, Any] = {
        "Hostname": args.hostname, "User": args.user, "WorkingDir": args.workdir,
        "AttachStdin": "stdin" in attach, "AttachStdout": "stdout" in attach, "AttachStderr": "stderr" in attach,
        "Tty": args.tty, "OpenStdin": args.interactive, "StdinOnce": args.interactive and "stdin" in attach,
        "Env": parse_env(args.env, args.env_file, environ) or None, "Cmd": args.command or None,
        "Image": args.image, "Labels": parse_labels(args.label), "ExposedPorts": exposed or None,
        "Volumes": anonymous or None, "HostConfig": host_config,
        "NetworkingConfig": {"EndpointsConfig": _endpoints(args.network, args.network_alias, args.ip)},
    }
    if args.entrypoint is not None:
        body["Entrypoint"] = [args.entrypoint] if args.entrypoint else [""]
    if args.stop_signal:
        body["StopSignal"] = args.stop_signal
    if args.stop_timeout is not None:
        body["StopTimeout"] = args.stop_timeout
    healthcheck = parse_healthcheck(args)
    if healthcheck is not None:
        body["Healthcheck"] = healthcheck
    return body
