"""Build a container's filesystem view: mounts, devices, pivot_root, masked and read-only paths.

Runs inside the container's new mount namespace, in the init process, before it drops privileges.
Guarantees:
- every mount destination is resolved inside the rootfs: a symlink in the image is followed as if the
  rootfs were ``/``, so no mount ever lands on a host path (``secure_join``);
- ``proc`` and ``sysfs`` are refused on a destination that is a symlink in the image;
- after ``pivot_root`` the host's root is detached; nothing after that needs a host path.
Failures raise ``OSError`` or ``RootfsError`` (a one-line message naming the mount).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

from backend.engine.runtime import syscalls as sc
from backend.engine.runtime.spec import Device, Mount, Spec

_FLAGS: dict[str, tuple[bool, int]] = {
    # option: (clear?, flag)
    "ro": (False, sc.MS_RDONLY), "rw": (True, sc.MS_RDONLY),
    "nosuid": (False, sc.MS_NOSUID), "suid": (True, sc.MS_NOSUID),
    "nodev": (False, sc.MS_NODEV), "dev": (True, sc.MS_NODEV),
    "noexec": (False, sc.MS_NOEXEC), "exec": (True, sc.MS_NOEXEC),
    "sync": (False, sc.MS_SYNCHRONOUS), "async": (True, sc.MS_SYNCHRONOUS),
    "dirsync": (False, sc.MS_DIRSYNC), "remount": (False, sc.MS_REMOUNT),
    "mand": (False, sc.MS_MANDLOCK), "nomand": (True, sc.MS_MANDLOCK),
    "noatime": (False, sc.MS_NOATIME), "atime": (True, sc.MS_NOATIME),
    "nodiratime": (False, sc.MS_NODIRATIME), "diratime": (True, sc.MS_NODIRATIME),
    "relatime": (False, sc.MS_RELATIME), "norelatime": (True, sc.MS_RELATIME),
    "strictatime": (False, sc.MS_STRICTATIME), "nostrictatime": (True, sc.MS_STRICTATIME),
    "bind": (False, sc.MS_BIND), "rbind": (False, sc.MS_BIND | sc.MS_REC),
    "nosymfollow": (False, sc.MS_NOSYMFOLLOW), "lazytime": (False, sc.MS_LAZYTIME),
}
_PROPAGATION = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}
# Flags a remount must keep when the kernel has locked them (mounts inherited into a user namespace).
_LOCKED = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | sc.MS_NOATIME | sc.MS_NODIRATIME | sc.MS_RELATIME

DEFAULT_DEVICES = (
    Device("/dev/null", "c", 1, 3, 0o666, 0, 0),
    Device("/dev/zero", "c", 1, 5, 0o666, 0, 0),
    Device("/dev/full", "c", 1, 7, 0o666, 0, 0),
    Device("/dev/random", "c", 1, 8, 0o666, 0, 0),
    Device("/dev/urandom", "c", 1, 9, 0o666, 0, 0),
    Device("/dev/tty", "c", 5, 0, 0o666, 0, 0),
)
_MAX_SYMLINKS = 255


class RootfsError(Exception):
    """A mount the configuration asks for cannot be made safely. The message names the mount."""


def parse_options(options: Sequence[str]) -> tuple[int, int, str]:
    """Split mount options into (flags, propagation flags, data string for the filesystem)."""
    flags = 0
    propagation = 0
    data: list[str] = []
    for opt in options:
        if opt in _FLAGS:
            clear, flag = _FLAGS[opt]
            flags = flags & ~flag if clear else flags | flag
        elif opt in _PROPAGATION:
            propagation |= _PROPAGATION[opt]
        else:
            data.append(opt)
    return flags, propagation, ",".join(data)


def secure_join(root: str, path: str) -> str:
    """Resolve ``path`` as if ``root`` were ``/``: symlinks and ``..`` never leave ``root``.

    Components that do not exist are appended as they are. Raises RootfsError on a symlink loop.
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except OSError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_SYMLINKS:
                raise RootfsError(f"too many symlinks resolving {path} in the rootfs")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _locked_flags(path: str) -> int:
    return os.statvfs(path).f_flag & _LOCKED


def _ensure_target(target: str, is_dir: bool) -> None:
    if os.path.lexists(target):
        return
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    if is_dir:
        os.mkdir(target, 0o755)
    else:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def _bind(source: str, target: str, flags: int, propagation: int) -> None:
    sc.mount(source, target, None, sc.MS_BIND | (flags & sc.MS_REC))
    extra = flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
    if extra:
        sc.mount(None, target, None,
                 sc.MS_BIND | sc.MS_REMOUNT | extra | _locked_flags(target) | (flags & sc.MS_REC))
    if propagation:
        sc.mount(None, target, None, propagation)


def _cgroup_hierarchies() -> list[tuple[str, str]]:
    """This process's cgroup v1 hierarchies as (controllers, path), in hierarchy order
    (``("memory", "/berth/x")``, ``("name=systemd", ...)``); empty on a cgroup v2 host."""
    found = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            number, controllers, path = line.rstrip("\n").split(":", 2)
            if controllers:
                found.append((int(number), controllers, path))
    return [(controllers, path) for _, controllers, path in sorted(found)]


def _own_cgroup_v2() -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].rstrip("\n")
    return "/"


def _mount_cgroup(target: str, flags: int, spec: Spec) -> None:
    """Mount the container's cgroups, showing only its own cgroup.

    With a cgroup namespace the kernel roots fresh cgroup mounts at the container's cgroup; without
    one, the container's cgroup directories are bind-mounted from the host. On v1 the hierarchies sit
    in a writable tmpfs, one mount each with the requested flags (runc's layout).
    """
    own_ns = spec.namespace("cgroup") is not None
    hierarchies = _cgroup_hierarchies()
    if not hierarchies:
        if own_ns:
            sc.mount("cgroup2", target, "cgroup2", flags)
        else:
            _bind("/sys/fs/cgroup" + _own_cgroup_v2(), target, flags | sc.MS_BIND | sc.MS_REC, 0)
        return
    sc.mount("tmpfs", target, "tmpfs", flags & ~sc.MS_RDONLY, "mode=755")
    for controllers, path in hierarchies:
        sub = controllers.replace("name=", "")
        mountpoint = os.path.join(target, sub)
        os.mkdir(mountpoint, 0o755)
        if own_ns:
            source = sub if controllers.startswith("name=") else "cgroup"
            sc.mount(source, mountpoint, "cgroup", flags, controllers)
        else:
            _bind(f"/sys/fs/cgroup/{sub}{path}", mountpoint, flags | sc.MS_BIND | sc.MS_REC, 0)
        if "," in sub:
            for alias in sub.split(","):
                os.symlink(sub, os.path.join(target, alias))


def mount_one(spec: Spec, m: Mount) -> None:
    """Make one ``mounts[]`` entry. Raises RootfsError or OSError."""
    rootfs = spec.rootfs
    if m.type in ("proc", "sysfs"):
        literal = os.path.join(rootfs, m.destination.lstrip("/"))
        if os.path.islink(literal):
            raise RootfsError(f"mount {m.destination}: refusing to mount {m.type} on a symlink in the rootfs")
    target = secure_join(rootfs, m.destination)
    flags, propagation, data = parse_options(m.options)
    if m.type == "bind" or flags & sc.MS_BIND:
        try:
            src_is_dir = os.path.isdir(m.source)
            if not os.path.exists(m.source):
                raise RootfsError(f"mount {m.destination}: bind source {m.source} does not exist")
        except OSError as exc:
            raise RootfsError(f"mount {m.destination}: {exc.strerror}") from exc
        _ensure_target(target, src_is_dir)
        _bind(m.source, target, flags, propagation)
        return
    _ensure_target(target, True)
    if m.type == "cgroup":
        _mount_cgroup(target, flags, spec)
    else:
        sc.mount(m.source or m.type, target, m.type, flags, data or None)
    if propagation:
        sc.mount(None, target, None, propagation)


def _make_device(rootfs: str, dev: Device, bind: bool) -> None:
    target = secure_join(rootfs, dev.path)
    if os.path.lexists(target):
        os.unlink(target)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if bind:
        _ensure_target(target, False)
        sc.mount(dev.path, target, None, sc.MS_BIND)
        return
    kinds = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
    os.mknod(target, kinds[dev.type] | (dev.file_mode & 0o7777), os.makedev(dev.major, dev.minor))
    os.chmod(target, dev.file_mode & 0o7777)
    os.chown(target, dev.uid, dev.gid)


def create_devices(spec: Spec, in_user_ns: bool) -> None:
    """Create the default devices and ``linux.devices`` (bind-mounted from the host in a user namespace)."""
    seen = set()
    for dev in (*spec.devices, *DEFAULT_DEVICES):
        if dev.path in seen:
            continue
        seen.add(dev.path)
        _make_device(spec.rootfs, dev, in_user_ns)


def _dev_links(spec: Spec) -> None:
    dev = secure_join(spec.rootfs, "/dev")
    destinations = {m.destination for m in spec.mounts}
    links = [("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"),
             ("/proc/self/fd/2", "stderr")]
    if "/dev/pts" in destinations:
        ptmx = os.path.join(dev, "ptmx")
        if os.path.lexists(ptmx):
            os.unlink(ptmx)
        links.append(("pts/ptmx", "ptmx"))
    for target, name in links:
        path = os.path.join(dev, name)
        if not os.path.lexists(path):
            os.symlink(target, path)


def prepare_rootfs(spec: Spec, in_user_ns: bool) -> None:
    """Mount everything under the rootfs and pivot into it. On return ``/`` is the container root."""
    propagation = _PROPAGATION.get(spec.rootfs_propagation or "rslave", sc.MS_SLAVE | sc.MS_REC)
    sc.mount(None, "/", None, propagation)
    sc.mount(spec.rootfs, spec.rootfs, None, sc.MS_BIND | sc.MS_REC)
    for m in spec.mounts:
        try:
            mount_one(spec, m)
        except OSError as exc:
            raise RootfsError(f"mount {m.destination} ({m.type}): {exc.strerror}") from exc
    dev_is_mounted = any(m.destination == "/dev" for m in spec.mounts)
    if dev_is_mounted:
        create_devices(spec, in_user_ns)
        _dev_links(spec)
    pivot(spec.rootfs)


def pivot(rootfs: str) -> None:
    """pivot_root into ``rootfs`` and detach the old root."""
    os.chdir(rootfs)
    sc.pivot_root(".", ".")
    sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def finalize_rootfs(spec: Spec) -> None:
    """After pivot: read-only root, sysctls, read-only paths, masked paths (in that order)."""
    if spec.readonly_root:
        sc.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | _locked_flags("/"))
    for key, value in spec.sysctl.items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
    for path in spec.readonly_paths:
        if not os.path.lexists(path):
            continue
        sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
        sc.mount(None, path, None,
                 sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC | _locked_flags(path))
    for path in spec.masked_paths:
        if not os.path.lexists(path):
            continue
        if os.path.isdir(path):
            sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY)
        else:
            sc.mount("/dev/null", path, None, sc.MS_BIND)
