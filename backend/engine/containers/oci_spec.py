"""From an image config and a ``CreateRequest`` to the OCI runtime config (config.json), as dockerd does.

Docker's rules: the request's Entrypoint replaces the image's and then the image's Cmd is dropped
unless the request gives one; Env is the image's overridden by the request's; User names resolve in
the image's own /etc/passwd and /etc/group (read inside the root filesystem, never through a symlink
out of it, never through NSS). Security defaults are Docker's: 14 capabilities, the default seccomp
profile, masked and read-only paths; ``--privileged`` lifts them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

from backend.engine.containers.create_request import CreateRequest
from backend.engine.errors import InvalidParameter, Unavailable
from backend.engine.networks.service import NetworkSpec
from backend.engine.runtime.capabilities import CAPABILITIES
from backend.engine.runtime.defaults import DOCKER_DEFAULT_CAPABILITIES, docker_default_config
from backend.engine.runtime.rootfs import secure_join
from backend.engine.runtime.seccomp import default_docker_profile, oci_seccomp_from_docker_profile

MAX_PASSWD = 4 * 1024 * 1024
DEFAULT_SHM = 64 * 1024 * 1024


def _read_db(rootfs: str, path: str) -> list[list[str]]:
    try:
        with open(secure_join(rootfs, path), "rb") as f:
            data = f.read(MAX_PASSWD)
    except OSError:
        return []
    return [line.split(":") for line in data.decode("utf-8", "replace").splitlines() if line and line[0] != "#"]


def resolve_user(rootfs: str, user: str) -> tuple[int, int, list[int]]:
    """``user[:group]`` (names or ids) to (uid, gid, supplementary gids) using the image's files.

    Raises InvalidParameter with Docker's message when a name is unknown.
    """
    name, _, group = (user or "0").partition(":")
    passwd = _read_db(rootfs, "/etc/passwd")
    entry = next((e for e in passwd if len(e) >= 4 and (e[0] == name or (name.isdigit() and e[2] == name))), None)
    if entry is not None:
        uid, gid = int(entry[2]), int(entry[3]) if entry[3].isdigit() else 0
        username = entry[0]
    elif name.isdigit():
        uid, gid, username = int(name), 0, ""
    else:
        raise InvalidParameter(f"unable to find user {name}: no matching entries in passwd file")
    groups = _read_db(rootfs, "/etc/group")
    if group:
        match = next((g for g in groups if len(g) >= 3 and (g[0] == group or (group.isdigit() and g[2] == group))),
                     None)
        if match is not None:
            gid = int(match[2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise InvalidParameter(f"unable to find group {group}: no matching entries in group file")
    extra = sorted({int(g[2]) for g in groups
                    if len(g) >= 4 and username and username in g[3].split(",") and g[2].isdigit()} - {gid})
    if uid > 2**32 - 2 or gid > 2**32 - 2:
        raise InvalidParameter(f"user {user}: id out of range")
    return uid, gid, extra


def _capabilities(req: CreateRequest) -> list[str]:
    if req.privileged:
        return sorted(CAPABILITIES)
    caps = set(DOCKER_DEFAULT_CAPABILITIES)
    if "ALL" in req.cap_add:
        caps = set(CAPABILITIES)
    caps |= {c for c in req.cap_add if c != "ALL"}
    if "ALL" in req.cap_drop:
        caps = {c for c in req.cap_add if c != "ALL"}
    caps -= {c for c in req.cap_drop if c != "ALL"}
    return sorted(caps, key=lambda c: CAPABILITIES[c])


def _security(req: CreateRequest, caps: list[str]) -> tuple[dict[str, Any] | None, bool]:
    """(seccomp section or None, no_new_privileges) from --security-opt and --privileged."""
    seccomp: dict[str, Any] | None = None if req.privileged else oci_seccomp_from_docker_profile(
        default_docker_profile(), caps)
    nnp = False
    for opt in req.security_opt:
        key, sep, value = opt.partition("=" if "=" in opt else ":")
        if key == "no-new-privileges":
            nnp = value in ("", "true") if sep else True
        elif key == "seccomp":
            if value == "unconfined":
                seccomp = None
            else:
                try:
                    profile = json.loads(value)
                except ValueError as exc:
                    raise InvalidParameter(f"Decoding seccomp profile failed: {exc}") from exc
                if not isinstance(profile, dict):
                    raise InvalidParameter("Decoding seccomp profile failed: not an object")
                seccomp = oci_seccomp_from_docker_profile(profile, caps)
        elif key in ("apparmor", "label"):
            continue
        else:
            raise InvalidParameter(f"invalid --security-opt: {opt!r}")
    return seccomp or None, nnp


def command(req: CreateRequest, image: Mapping[str, Any]) -> list[str]:
    """The process args by Docker's Entrypoint/Cmd rules. Raises InvalidParameter if empty."""
    entrypoint = req.entrypoint if req.entrypoint is not None else list(image.get("Entrypoint") or [])
    if req.cmd is not None:
        cmd = req.cmd
    elif req.entrypoint is not None:
        cmd = []
    else:
        cmd = list(image.get("Cmd") or [])
    args = [*entrypoint, *cmd]
    if not args:
        raise InvalidParameter("No command specified")
    return args


def effective_config(body: Mapping[str, Any], image_config: Mapping[str, Any], container_id: str) -> dict[str, Any]:
    """The ``Config`` that ``docker inspect`` shows: the create body's fields merged with the image's the way
    dockerd merges them (user env first, then image env of other names; image labels under the user's;
    the image's Cmd only when neither Cmd nor Entrypoint was given; hostname defaulting to the short ID)."""
    image = image_config.get("config") or {}
    config = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
    for key in ("Cmd", "Entrypoint"):  # Docker's StrSlice: one string is a one-item list
        if isinstance(config.get(key), str):
            config[key] = [config[key]]
    config["Hostname"] = config.get("Hostname") or container_id[:12]
    env = list(config.get("Env") or [])
    names = {item.partition("=")[0] for item in env}
    config["Env"] = env + [item for item in image.get("Env") or [] if item.partition("=")[0] not in names]
    config["Labels"] = dict(image.get("Labels") or {}) | dict(config.get("Labels") or {})
    if not config.get("Entrypoint"):
        if not config.get("Cmd"):
            config["Cmd"] = image.get("Cmd")
        config["Entrypoint"] = image.get("Entrypoint")
    for key in ("User", "WorkingDir", "StopSignal"):
        config[key] = config.get(key) or image.get(key) or ""
    for key in ("ExposedPorts", "Volumes"):
        merged = dict(image.get(key) or {}) | dict(config.get(key) or {})
        config[key] = merged or None
    mine, theirs = config.get("Healthcheck") or {}, image.get("Healthcheck") or {}
    if mine or theirs:  # field by field: a field the request leaves empty comes from the image
        config["Healthcheck"] = {key: mine.get(key) or theirs.get(key) for key in {**theirs, **mine}}
    return config


def merged_env(req: CreateRequest, image: Mapping[str, Any], hostname: str) -> list[str]:
    env: dict[str, str] = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                           "HOSTNAME": hostname}
    for item in [*(image.get("Env") or []), *req.env]:
        key, sep, value = str(item).partition("=")
        if not key:
            raise InvalidParameter(f"invalid environment variable: {item!r}")
        if sep:
            env[key] = value
        else:  # "-e NAME" without a value: the CLI resolves it; a bare name here is dropped, as dockerd does
            env.pop(key, None)
    if req.tty:
        env.setdefault("TERM", "xterm")
    return [f"{k}={v}" for k, v in env.items()]


INIT_PATH_IN_CONTAINER = "/sbin/docker-init"


def default_init_binary() -> str | None:
    """The host's static init for ``--init``: ``docker-init`` or Debian's ``tini-static`` on PATH."""
    return shutil.which("docker-init") or shutil.which("tini-static")


def build_oci_spec(req: CreateRequest, image_config: Mapping[str, Any], rootfs: str, *, container_id: str,
                   cgroups_path: str, init_binary: str | None = None,
                   mounts: Sequence[Mapping[str, object]] = (),
                   network: NetworkSpec | None = None) -> dict[str, Any]:
    """The config.json for the container. With ``req.init``, ``init_binary`` (a static tini) is bind-mounted
    read-only at /sbin/docker-init and runs as PID 1 (``docker-init -- args``), as Docker does. ``mounts``
    (volumes and binds) and ``req.tmpfs`` are mounted parents first.
    ``network`` (from the network service) names the network namespace to join (None: the host's) and
    bind-mounts /etc/hosts, /etc/resolv.conf and /etc/hostname.
    Raises InvalidParameter for a request the image cannot satisfy, Unavailable for ``--init`` without an
    init binary."""
    image = image_config.get("config") or {}
    hostname = req.hostname or container_id[:12]
    caps = _capabilities(req)
    seccomp, nnp = _security(req, caps)
    uid, gid, groups = resolve_user(rootfs, req.user or str(image.get("User") or ""))
    cwd = req.working_dir or str(image.get("WorkingDir") or "") or "/"
    if not cwd.startswith("/"):
        raise InvalidParameter(f"the working directory '{cwd}' is invalid, it needs to be an absolute path")
    memory_swap = None
    if req.memory:
        memory_swap = req.memory_swap if req.memory_swap > 0 else (-1 if req.memory_swap == -1 else 2 * req.memory)
    extra_mounts: list[dict[str, object]] = []
    for path, options in req.tmpfs.items():
        opts = ["nosuid", "nodev", "noexec", *[o for o in options.split(",") if o]]
        extra_mounts.append({"destination": path, "type": "tmpfs", "source": "tmpfs", "options": opts})
    extra_mounts = sorted([*extra_mounts, *map(dict, mounts)], key=lambda m: str(m["destination"]).count("/"))
    args = command(req, image)
    if req.init:
        if not init_binary:
            raise Unavailable("--init: no init binary on this host (install tini: apt-get install tini)")
        args = [INIT_PATH_IN_CONTAINER, "--", *args]
        extra_mounts.append({"destination": INIT_PATH_IN_CONTAINER, "type": "bind", "source": init_binary,
                             "options": ["bind", "ro", "nosuid", "nodev"]})
    if network is not None:
        extra_mounts.extend(network.mounts)
    config = docker_default_config(
        args, env=merged_env(req, image, hostname), cwd=os.path.normpath(cwd), terminal=req.tty,
        user=(uid, gid), additional_gids=groups, hostname=hostname, readonly_rootfs=req.readonly_rootfs,
        capabilities=caps, seccomp=seccomp, no_new_privileges=nnp, cgroups_path=cgroups_path,
        memory_limit=req.memory or None, memory_swap=memory_swap,
        pids_limit=req.pids_limit or None,
        rlimits=[(f"RLIMIT_{u.name.upper()}", u.soft, u.hard) for u in req.ulimits],
        extra_mounts=extra_mounts, rootfs=rootfs, sysctls=req.sysctls or None,
        shm_size=req.shm_size or DEFAULT_SHM,
    )
    linux: dict[str, Any] = config["linux"]  # type: ignore[assignment]
    if network is not None:
        linux["namespaces"] = [ns | {"path": network.namespace} if ns["type"] == "network" else ns
                               for ns in linux["namespaces"] if ns["type"] != "network" or network.namespace]
        if not network.namespace and not req.sysctls:  # the host's network: its net.* sysctls are not ours
            linux["sysctl"] = {k: v for k, v in linux.get("sysctl", {}).items() if not k.startswith("net.")}
    resources: dict[str, Any] = linux.setdefault("resources", {})
    cpu: dict[str, Any] = {}
    if req.nano_cpus:
        cpu["period"] = 100_000
        cpu["quota"] = math.ceil(req.nano_cpus * 100_000 / 1e9)
    if req.cpu_quota:
        cpu["quota"] = req.cpu_quota
    if req.cpu_period:
        cpu["period"] = req.cpu_period
    if req.cpu_shares:
        cpu["shares"] = req.cpu_shares
    if req.cpuset_cpus:
        cpu["cpus"] = req.cpuset_cpus
    if cpu:
        resources["cpu"] = cpu
    if req.privileged:
        linux["maskedPaths"] = []
        linux["readonlyPaths"] = []
        resources["devices"] = [{"allow": True, "access": "rwm"}]
    if req.oom_score_adj:
        config["process"]["oomScoreAdj"] = req.oom_score_adj  # type: ignore[index]
    config["annotations"] = {"org.berth.container.id": container_id}
    return config
