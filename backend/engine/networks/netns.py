"""Named network namespaces: one per container, bind-mounted at ``<exec-root>/netns/<container-id>``.

The namespace is made in a worker thread (a network namespace belongs to a thread, so the daemon's other
threads are untouched): unshare, bind-mount ``/proc/thread-self/ns/net`` on the file, go back. The file
keeps the namespace alive without any process in it; the runtime joins it through the OCI config's
``linux.namespaces`` path. :func:`run_in` runs a function inside one (sockets made there stay there).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import TypeVar

from backend.engine.errors import Unavailable
from backend.engine.runtime import syscalls as sc

T = TypeVar("T")


def _enter(fd: int) -> None:
    sc.setns(fd, sc.CLONE_NEWNET)


def run_in(path: str, work: Callable[[], T]) -> T:
    """``work()`` inside the namespace at ``path``, from the calling thread, which is back in its own
    namespace afterwards. Raises Unavailable if the namespace cannot be entered; if the thread cannot
    return, the process aborts (it must never serve requests from a container's namespace)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise Unavailable(f"network namespace {path}: {exc.strerror}") from exc
        try:
            _enter(target)
        finally:
            os.close(target)
        try:
            return work()
        finally:
            try:
                _enter(own)
            except OSError:
                os.abort()
    finally:
        os.close(own)


def create(path: str) -> None:
    """A new network namespace bound at ``path`` (replacing a stale one). Raises Unavailable."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    remove(path)
    with open(path, "x"):
        pass
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.unshare(sc.CLONE_NEWNET)
        try:
            sc.mount(f"/proc/self/task/{sc.libc().gettid()}/ns/net", path, None, sc.MS_BIND)
        finally:
            try:
                _enter(own)
            except OSError:
                os.abort()
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise Unavailable(f"cannot create a network namespace at {path}: {exc.strerror}") from exc
    finally:
        os.close(own)


def remove(path: str) -> None:
    """Unmount and delete the namespace file (nothing if absent). The namespace goes when its last user does."""
    with contextlib.suppress(OSError):
        sc.umount2(path, sc.MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def listed(directory: str) -> list[str]:
    """The container IDs with a namespace file in ``directory``."""
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
