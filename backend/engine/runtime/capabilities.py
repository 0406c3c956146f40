"""Linux capability names and the order in which a process's five capability sets are applied.

``cap_mask`` turns names into a bit mask and rejects unknown names; ``apply_capabilities`` is called
in the container process after it has switched uid (with PR_SET_KEEPCAPS) and before exec.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from backend.engine.errors import InvalidParameter
from backend.engine.runtime import syscalls

CAPABILITIES: dict[str, int] = {
    name: number
    for number, name in enumerate(
        (
            "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
            "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
            "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
            "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
            "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
            "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
            "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
            "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
        )
    )
}


@functools.cache
def last_cap() -> int:
    """The highest capability number this kernel knows (/proc/sys/kernel/cap_last_cap), read once."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return max(CAPABILITIES.values())


def cap_mask(names: Iterable[str], field: str) -> int:
    """Bit mask of the named capabilities. Raises InvalidParameter for an unknown name.

    Names the kernel does not support (above cap_last_cap) are ignored, as runc does.
    """
    top = last_cap()
    mask = 0
    for name in names:
        if not isinstance(name, str):
            raise InvalidParameter(f"config.json: process.capabilities.{field}: expected strings")
        number = CAPABILITIES.get(name.upper())
        if number is None:
            raise InvalidParameter(f'config.json: process.capabilities.{field}: unknown capability "{name}"')
        if number <= top:
            mask |= 1 << number
    return mask


@dataclass(frozen=True)
class CapabilitySets:
    """The five capability sets of a process as bit masks."""

    bounding: int = 0
    effective: int = 0
    inheritable: int = 0
    permitted: int = 0
    ambient: int = 0


def drop_bounding(caps: CapabilitySets) -> None:
    """Drop from the bounding set every capability not in ``caps.bounding``. Needs CAP_SETPCAP."""
    for number in range(last_cap() + 1):
        if not caps.bounding & (1 << number):
            syscalls.prctl(syscalls.PR_CAPBSET_DROP, number)


def apply_capabilities(caps: CapabilitySets) -> None:
    """Set effective, permitted and inheritable, then raise the ambient set. Raises OSError.

    An ambient capability is raised only when it is also permitted and inheritable (the kernel's
    rule); others are skipped, as runc does.
    """
    syscalls.capset(caps.effective, caps.permitted, caps.inheritable)
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    raisable = caps.ambient & caps.permitted & caps.inheritable
    for number in range(last_cap() + 1):
        if raisable & (1 << number):
            syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_RAISE, number)
