"""Thin, typed wrappers over the Linux system calls the runtime needs and Python 3.11 lacks.

Every wrapper raises ``OSError`` with the real errno (and the path where one is involved); callers
wrap it once into the engine's taxonomy. libc is loaded once per process by ``libc()`` and must be
loaded before a process enters a container root (the runtime calls ``libc()`` early for that).
"""

from __future__ import annotations

import ctypes
import functools
import os

# clone(2) / unshare(2) / setns(2) flags.
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# mount(2) flags.
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000
MNT_DETACH = 0x2

# prctl(2) options.
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# Syscall numbers not exported by libc on every distribution (x86_64 / aarch64 share the new ones).
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91}
_SYS_CLOSE_RANGE = 436
_SYS_OPENAT2 = 437
CLOSE_RANGE_CLOEXEC = 1 << 2

# openat2 resolve flags.
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library, loaded once with errno capture. Call before entering a container root."""
    lib = ctypes.CDLL("libc.so.6", use_errno=True)
    lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.unshare.argtypes = [ctypes.c_int]
    lib.setns.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    lib.syscall.restype = ctypes.c_long
    return lib


def _machine() -> str:
    return os.uname().machine


def _check(ret: int, what: str, path: str | None = None) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        if path is not None:
            raise OSError(err, f"{what}: {os.strerror(err)}", path)
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2). Raises OSError naming the target."""
    _check(libc().mount(_b(source), _b(target), _b(fstype), flags, _b(data)), "mount", target)


def umount2(target: str, flags: int = 0) -> None:
    """umount2(2). Raises OSError naming the target."""
    _check(libc().umount2(_b(target), flags), "umount", target)


def unshare(flags: int) -> None:
    """unshare(2). Raises OSError."""
    _check(libc().unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2) into the namespace open at ``fd``. Raises OSError."""
    _check(libc().setns(fd, nstype), "setns")


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2). Raises OSError."""
    nr = _SYS_PIVOT_ROOT[_machine()]
    _check(libc().syscall(nr, _b(new_root), _b(put_old)), "pivot_root", new_root)


def sethostname(name: str) -> None:
    """sethostname(2). Raises OSError."""
    raw = name.encode()
    _check(libc().sethostname(raw, len(raw)), "sethostname")


def setdomainname(name: str) -> None:
    """setdomainname(2). Raises OSError."""
    raw = name.encode()
    _check(libc().setdomainname(raw, len(raw)), "setdomainname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2). Raises OSError."""
    return _check(libc().prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's three capability sets (64-bit masks, _LINUX_CAPABILITY_VERSION_3)."""
    header = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    nr = _SYS_CAPSET[_machine()]
    _check(libc().syscall(nr, ctypes.byref(header), ctypes.byref(data)), "capset")


def close_range_cloexec(first: int) -> None:
    """Mark every descriptor >= ``first`` close-on-exec (close_range(2) with CLOSE_RANGE_CLOEXEC)."""
    _check(libc().syscall(_SYS_CLOSE_RANGE, ctypes.c_uint(first), ctypes.c_uint(0xFFFFFFFF),
                          ctypes.c_uint(CLOSE_RANGE_CLOEXEC)), "close_range")


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): open ``path`` relative to ``dirfd`` under the given RESOLVE_* rules. Raises OSError."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    ret = libc().syscall(_SYS_OPENAT2, ctypes.c_int(dirfd), _b(path), ctypes.byref(how),
                         ctypes.c_size_t(ctypes.sizeof(how)))
    return _check(ret, "openat2", path)
