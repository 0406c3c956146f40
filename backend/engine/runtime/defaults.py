"""Build the OCI ``config.json`` that dockerd 20.10 would hand to its runtime for ``docker run``.

The generated document follows moby's ``oci.DefaultLinuxSpec`` and the ``daemon/oci_linux.go``
options that ``docker run`` applies on top of it (user, capabilities, rlimits, readonly rootfs,
environment, sysctls, resources, user namespace). It is plain JSON data (``dict``/``list``/``str``/
``int``/``bool``) so that ``json.dumps`` writes it unchanged.

Invariants of the result:

- ``ociVersion`` is ``"1.0.2"``; ``root.path`` is the ``rootfs`` argument.
- For uid 0 the capability sets bounding, effective and permitted are equal; the inheritable and
  ambient sets are absent (empty), as moby has done since CVE-2022-24769. For any other uid only the
  bounding set is given, as moby 20.10's ``oci.SetCapabilities`` does, so that ``execve`` semantics
  leave a non-root process without capabilities.
- ``process.user.additionalGids`` starts with the primary gid, then ``additional_gids`` (moby does the
  same in ``getUser``).
- A ``"user"`` namespace is added whenever uid or gid mappings are given.
- Every mount, list and mapping in the result is a fresh object: callers may mutate it freely.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

__all__ = [
    "DEFAULT_ENV",
    "DEFAULT_PATH",
    "DEFAULT_RLIMITS",
    "DEFAULT_SHM_SIZE",
    "DOCKER_DEFAULT_CAPABILITIES",
    "DOCKER_DEVICE_CGROUP_RULES",
    "DOCKER_MASKED_PATHS",
    "DOCKER_READONLY_PATHS",
    "KNOWN_NAMESPACES",
    "docker_default_config",
]

OCI_VERSION = "1.0.2"

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""moby's ``DefaultPathEnv`` for Linux."""

DEFAULT_ENV: tuple[str, ...] = (f"PATH={DEFAULT_PATH}",)

DOCKER_DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
"""The 14 capabilities Docker grants a container that asks for no --cap-add/--cap-drop."""

DOCKER_MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
)
"""``linux.maskedPaths`` of moby 20.10's DefaultLinuxSpec, in its order."""

DOCKER_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)
"""``linux.readonlyPaths`` of moby 20.10's DefaultLinuxSpec, in its order."""

DEFAULT_SHM_SIZE = 64 * 1024 * 1024
"""dockerd's default ``--shm-size`` (bytes); it is written as ``size=67108864`` on /dev/shm."""

DEFAULT_RLIMITS: tuple[tuple[str, int, int], ...] = (("RLIMIT_NOFILE", 1048576, 1048576),)
"""``(type, soft, hard)`` triples; the open-files limit a stock Docker container sees."""

KNOWN_NAMESPACES: frozenset[str] = frozenset({"pid", "network", "ipc", "uts", "mount", "cgroup", "user", "time"})

# (allow, type, major, minor) of moby's default device cgroup rules, all with access "rwm": deny
# everything, allow null (1:5), zero (1:3), urandom (1:9), random (1:8), tty (5:0) and console (5:1),
# and deny /dev/fuse (10:229) explicitly.
DOCKER_DEVICE_CGROUP_RULES: tuple[tuple[bool, str | None, int | None, int | None], ...] = (
    (False, None, None, None),
    (True, "c", 1, 5),
    (True, "c", 1, 3),
    (True, "c", 1, 9),
    (True, "c", 1, 8),
    (True, "c", 5, 0),
    (True, "c", 5, 1),
    (False, "c", 10, 229),
)

_RO_EXEMPT_ON_READONLY_ROOT = frozenset({"/proc", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev"})


def _default_mounts(shm_size: int) -> list[dict[str, object]]:
    """The mounts of DefaultLinuxSpec, with dockerd's /dev/shm size applied."""

    def mount(destination: str, fstype: str, source: str, *options: str) -> dict[str, object]:
        return {"destination": destination, "type": fstype, "source": source, "options": list(options)}

    return [
        mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
        mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ),
        mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", "ro", "nosuid", "noexec", "nodev"),
        mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
        mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"),
    ]


def _device_rules() -> list[dict[str, object]]:
    rules: list[dict[str, object]] = []
    for allow, dev_type, major, minor in DOCKER_DEVICE_CGROUP_RULES:
        rule: dict[str, object] = {"allow": allow}
        if dev_type is not None:
            rule["type"] = dev_type
        if major is not None:
            rule["major"] = major
        if minor is not None:
            rule["minor"] = minor
        rule["access"] = "rwm"
        rules.append(rule)
    return rules


def _merge_env(base: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """moby's ReplaceOrAppendEnvValues: a ``KEY=value`` in ``overrides`` replaces the same key in
    ``base``, otherwise it is appended; a bare ``KEY`` (no ``=``) removes the key."""
    result = list(base)
    for item in overrides:
        key = item.split("=", 1)[0]
        index = next((i for i, old in enumerate(result) if old.split("=", 1)[0] == key), None)
        if "=" not in item:
            if index is not None:
                del result[index]
            continue
        if index is None:
            result.append(item)
        else:
            result[index] = item
    return result


def _id_mappings(mappings: Sequence[tuple[int, int, int]]) -> list[dict[str, object]]:
    return [{"containerID": container_id, "hostID": host_id, "size": size} for container_id, host_id, size in mappings]


def _as_list(value: object) -> list[object]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"mount options must be a list, got {value!r}")
    return list(value)


def _sysctl_exists(name: str) -> bool:
    return os.path.exists(os.path.join("/proc/sys", name.replace(".", "/")))


def docker_default_config(
    args: Sequence[str],
    *,
    env: Sequence[str] = DEFAULT_ENV,
    cwd: str = "/",
    terminal: bool = False,
    user: tuple[int, int] = (0, 0),
    additional_gids: Sequence[int] = (),
    hostname: str = "berth",
    readonly_rootfs: bool = False,
    capabilities: Sequence[str] | None = None,
    seccomp: Mapping[str, object] | None = None,
    no_new_privileges: bool = False,
    namespaces: Sequence[str] = ("pid", "network", "ipc", "uts", "mount", "cgroup"),
    cgroups_path: str = "",
    memory_limit: int | None = None,
    memory_swap: int | None = None,
    pids_limit: int | None = None,
    rlimits: Sequence[tuple[str, int, int]] = DEFAULT_RLIMITS,
    extra_mounts: Sequence[Mapping[str, object]] = (),
    uid_mappings: Sequence[tuple[int, int, int]] = (),
    gid_mappings: Sequence[tuple[int, int, int]] = (),
    rootfs: str = "rootfs",
    sysctls: Mapping[str, str] | None = None,
    shm_size: int = DEFAULT_SHM_SIZE,
) -> dict[str, object]:
    """Return a config.json document as dockerd 20.10 builds it for ``docker run``.

    ``args`` is ``process.args`` and must not be empty. ``env`` is merged over dockerd's base
    environment (``PATH``, ``HOSTNAME``, and ``TERM=xterm`` with a terminal) the way dockerd merges
    ``--env``. ``capabilities`` defaults to :data:`DOCKER_DEFAULT_CAPABILITIES`. ``namespaces`` are
    OCI namespace type names; a ``"user"`` namespace is added when mappings are given. Mapping triples
    are ``(containerID, hostID, size)``; rlimit triples are ``(type, soft, hard)``.

    ``memory_limit`` and ``memory_swap`` are bytes; as in dockerd, a memory limit without a swap limit
    gets a swap limit of twice the memory limit (``memory_swap`` counts memory plus swap, as
    ``--memory-swap`` does). ``pids_limit`` <= 0 means unlimited (-1).

    ``sysctls=None`` gives dockerd's defaults for a private network namespace
    (``net.ipv4.ip_unprivileged_port_start=0`` and, without a user namespace,
    ``net.ipv4.ping_group_range=0 2147483647``) where the host kernel has them; pass ``{}`` for none.

    Raises ValueError for empty ``args``, an unknown namespace name, a relative ``cwd`` or a swap limit
    without a memory limit. It does not check capability names, rlimit names or seccomp content: a
    runtime is expected to reject those, and tests rely on being able to build such configs.
    """
    if not args:
        raise ValueError("process.args must not be empty")
    if not cwd.startswith("/"):
        raise ValueError(f"cwd must be an absolute path, got {cwd!r}")
    unknown = [name for name in namespaces if name not in KNOWN_NAMESPACES]
    if unknown:
        raise ValueError(f"unknown namespace type(s): {', '.join(unknown)}")
    if memory_swap is not None and memory_limit is None:
        raise ValueError("a swap limit needs a memory limit")

    uid, gid = user
    user_ns = bool(uid_mappings or gid_mappings)

    caps = list(DOCKER_DEFAULT_CAPABILITIES if capabilities is None else capabilities)
    cap_sets: dict[str, object]
    if uid == 0:
        cap_sets = {"bounding": list(caps), "effective": list(caps), "permitted": list(caps)}
    else:
        cap_sets = {"bounding": list(caps)}

    base_env = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
    if terminal:
        base_env.append("TERM=xterm")

    process: dict[str, object] = {
        "terminal": terminal,
        "user": {"uid": uid, "gid": gid, "additionalGids": [gid, *additional_gids]},
        "args": list(args),
        "env": _merge_env(base_env, env),
        "cwd": cwd,
        "capabilities": cap_sets,
        "rlimits": [{"type": kind, "hard": hard, "soft": soft} for kind, soft, hard in rlimits],
        "oomScoreAdj": 0,
    }
    if no_new_privileges:
        process["noNewPrivileges"] = True

    mounts = _default_mounts(shm_size)
    user_destinations = {str(m.get("destination")) for m in extra_mounts}
    mounts = [m for m in mounts if m["destination"] not in user_destinations]
    if "/dev" in user_destinations:
        mounts = [m for m in mounts if not str(m["destination"]).startswith("/dev/")]
    for m in mounts:
        options = [str(o) for o in _as_list(m["options"])]
        if readonly_rootfs and m["destination"] not in _RO_EXEMPT_ON_READONLY_ROOT and "ro" not in options:
            options.append("ro")
        if user_ns and m["type"] == "cgroup":
            # dockerd clears "ro" on the cgroup mount under user namespaces (kernel remount limits).
            options = [o for o in options if o != "ro"]
        m["options"] = options
    for extra in extra_mounts:
        copied = dict(extra)
        if "options" in copied:
            copied["options"] = list(_as_list(copied["options"]))
        mounts.append(copied)

    ns_names = list(namespaces)
    if user_ns and "user" not in ns_names:
        ns_names.append("user")

    if sysctls is None:
        sysctl: dict[str, str] = {}
        if "network" in ns_names:
            if not user_ns and _sysctl_exists("net.ipv4.ping_group_range"):
                sysctl["net.ipv4.ping_group_range"] = "0 2147483647"
            if _sysctl_exists("net.ipv4.ip_unprivileged_port_start"):
                sysctl["net.ipv4.ip_unprivileged_port_start"] = "0"
    else:
        sysctl = dict(sysctls)

    resources: dict[str, object] = {"devices": _device_rules()}
    if memory_limit is not None:
        swap = memory_swap if memory_swap is not None else 2 * memory_limit
        resources["memory"] = {"limit": memory_limit, "swap": swap}
    if pids_limit is not None:
        resources["pids"] = {"limit": pids_limit if pids_limit > 0 else -1}

    linux: dict[str, object] = {}
    if uid_mappings:
        linux["uidMappings"] = _id_mappings(uid_mappings)
    if gid_mappings:
        linux["gidMappings"] = _id_mappings(gid_mappings)
    if sysctl:
        linux["sysctl"] = sysctl
    linux["resources"] = resources
    if cgroups_path:
        linux["cgroupsPath"] = cgroups_path
    linux["namespaces"] = [{"type": name} for name in ns_names]
    linux["devices"] = []
    if seccomp is not None:
        linux["seccomp"] = dict(seccomp)
    linux["maskedPaths"] = list(DOCKER_MASKED_PATHS)
    linux["readonlyPaths"] = list(DOCKER_READONLY_PATHS)

    return {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": readonly_rootfs},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }
