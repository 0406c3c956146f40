"""Container root filesystems as overlayfs mounts over an image's layer chain.

The lower directories are given by their short names relative to the layer store root
(``l/ABCDEF123456:l/...``), so the mount options stay within one page even for 125 layers. The mount
runs in a short-lived forked child that changes into the layer store root first, so the caller's own
working directory is never touched (it may be a multi-threaded daemon).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from collections.abc import Sequence

from backend.engine.errors import InvalidParameter, Unavailable
from backend.engine.images.layer_store import LayerStore

MAX_LAYERS = 125
_PAGE = 4096


def _mount_in_child(cwd: str, target: str, data: str) -> int:
    """mount(2) an overlay from a forked child whose cwd is ``cwd``. Returns 0 or an errno."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.chdir(cwd)
            if libc.mount(b"overlay", target.encode(), b"overlay", 0, data.encode()) != 0:
                code = ctypes.get_errno() or errno.EIO
        except OSError as exc:
            code = exc.errno or errno.EIO
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def mount_rootfs(layers: LayerStore, chain: Sequence[str], container_dir: str) -> str:
    """Mount a writable overlay of the layers ``chain`` (top layer first, as chain IDs) at
    ``<container_dir>/merged`` with ``upper`` and ``work`` beside it. Returns the merged path.

    Raises InvalidParameter for an empty chain or more than 125 layers, Unavailable if the kernel
    refuses the mount.
    """
    if not chain:
        raise InvalidParameter("an image needs at least one layer to make a root filesystem")
    if len(chain) > MAX_LAYERS:
        raise InvalidParameter(f"image has {len(chain)} layers; at most {MAX_LAYERS} are supported")
    lower = ":".join(f"l/{layers.get(c).short}" for c in chain)
    paths = {name: os.path.join(container_dir, name) for name in ("upper", "work", "merged")}
    for path in paths.values():
        os.makedirs(path, mode=0o755, exist_ok=True)
    data = f"lowerdir={lower},upperdir={paths['upper']},workdir={paths['work']}"
    if len(data) >= _PAGE:
        raise InvalidParameter("overlay mount options are longer than one page (container path too long?)")
    code = _mount_in_child(layers.root, paths["merged"], data)
    if code:
        raise Unavailable(f"cannot mount the container's root filesystem: {os.strerror(code)}")
    return paths["merged"]


def unmount_rootfs(container_dir: str) -> None:
    """Unmount ``<container_dir>/merged`` (lazily if busy). Not mounted is fine."""
    merged = os.path.join(container_dir, "merged")
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.umount2(merged.encode(), 0) != 0:
        err = ctypes.get_errno()
        if err == errno.EBUSY:
            libc.umount2(merged.encode(), 2)  # MNT_DETACH
        elif err not in (errno.EINVAL, errno.ENOENT):
            raise Unavailable(f"cannot unmount {merged}: {os.strerror(err)}")
    with contextlib.suppress(OSError):
        os.rmdir(merged)
