"""Fork the processes of a container: its init (``create``) and extra processes (``exec``).

Process tree of ``create``::

    caller ── fork ──▶ setup child: joins the cgroup, the user namespace (the caller writes the id
                       maps), the other namespaces; forks the init and exits
                       └── fork ──▶ init: PID 1 of a new pid namespace; builds the rootfs, pivots,
                                    reports ready, blocks on exec.fifo until ``start``, then execs

``exec`` is the same shape, joining the namespaces of a running init instead of creating them.
Children report to the caller over a pipe of JSON lines: ``{"stage": "userns"}``, ``{"pid": N}``,
``{"ready": true}`` or ``{"error": "...", "kind": "..."}``. A child never returns into the caller's
code: it execs or calls ``os._exit``. Both children are non-dumpable from their first instruction.
With ``BERTH_RUNTIME_DEBUG`` set in the environment, a child that fails also prints its traceback to
its stderr (for developing the runtime; the one-line error is reported either way).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

from backend.engine import errors
from backend.engine.runtime import syscalls as sc
from backend.engine.runtime.cgroups import Cgroup
from backend.engine.runtime.process_setup import (
    SetupError,
    apply_rlimits,
    close_other_fds,
    finalize_and_exec,
    find_executable,
    setup_terminal,
)
from backend.engine.runtime.rootfs import RootfsError, finalize_rootfs, prepare_rootfs
from backend.engine.runtime.seccomp import CompiledFilter
from backend.engine.runtime.spec import IdMapping, Process, Spec

NS_FLAGS = {
    "user": sc.CLONE_NEWUSER, "pid": sc.CLONE_NEWPID, "network": sc.CLONE_NEWNET,
    "mount": sc.CLONE_NEWNS, "ipc": sc.CLONE_NEWIPC, "uts": sc.CLONE_NEWUTS, "cgroup": sc.CLONE_NEWCGROUP,
}
NS_PROC_NAMES = {
    "user": "user", "pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
    "cgroup": "cgroup",
}
# Join order: the user namespace first (it grants the rights for the rest), the mount namespace last
# (after it, host paths are gone).
_JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "mount")

_ERROR_KINDS: dict[str, type[errors.EngineError]] = {
    cls.__name__: cls
    for cls in (errors.InvalidParameter, errors.NotFound, errors.Forbidden, errors.Unavailable,
                errors.Conflict)
}


@dataclass
class Spawned:
    """A process the caller now owns: its host pid (the init, or the exec'd process)."""

    pid: int


class _Channel:
    """The write end of the report pipe, held by the children."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, **message: object) -> None:
        os.write(self.fd, json.dumps(message).encode() + b"\n")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _describe(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, errors.EngineError):
        return str(exc), type(exc).__name__
    if isinstance(exc, (RootfsError, SetupError)):
        return str(exc), "InvalidParameter"
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}", "Unavailable"
    return f"{type(exc).__name__}: {exc}", "Unavailable"


def _child_main(channel: _Channel, body: Callable[[], None]) -> None:
    """Run ``body`` in a forked child; report any failure and never return."""
    try:
        body()
    except BaseException as exc:
        message, kind = _describe(exc)
        try:
            if channel.fd >= 0:
                channel.send(error=message, kind=kind)
            else:
                os.write(2, f"berth-runtime: {message}\n".encode())
        except OSError:
            pass
        if os.environ.get("BERTH_RUNTIME_DEBUG"):
            with contextlib.suppress(BaseException):
                import traceback

                traceback.print_exc()
    finally:
        os._exit(1)


def _write_id_maps(pid: int, uid_maps: tuple[IdMapping, ...], gid_maps: tuple[IdMapping, ...]) -> None:
    for name, maps in (("uid_map", uid_maps), ("gid_map", gid_maps)):
        text = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(text)
        except OSError as exc:
            raise errors.InvalidParameter(f"invalid id mapping: writing {name}: {exc.strerror}") from exc


def _read_reports(read_fd: int, setup_pid: int, spec_maps: tuple[tuple[IdMapping, ...],
                  tuple[IdMapping, ...]] | None, go_fd: int) -> int:
    """Follow the children's reports until the new process is ready and its pid is known (the setup
    child and the new process write to one pipe, so either report may come first). Returns its host pid."""
    pid = 0
    ready = False
    with os.fdopen(read_fd, "rb") as reports:
        for line in reports:
            msg = json.loads(line)
            if "error" in msg:
                kind = _ERROR_KINDS.get(str(msg.get("kind")), errors.Unavailable)
                raise kind(str(msg["error"]))
            if msg.get("stage") == "userns" and spec_maps is not None:
                _write_id_maps(setup_pid, *spec_maps)
                os.write(go_fd, b"1")
            elif "pid" in msg:
                pid = int(msg["pid"])
            elif msg.get("ready"):
                ready = True
            if ready and pid:
                return pid
    raise errors.Unavailable("the container process exited before it was ready")


def _fork_tree(setup: Callable[[_Channel, int], None],
               user_maps: tuple[tuple[IdMapping, ...], tuple[IdMapping, ...]] | None,
               keep_fds: tuple[int, ...]) -> Spawned:
    """Fork the setup child. It keeps only stdio, ``keep_fds`` and its report pipes, so no other
    descriptor of the caller can reach the container."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    go_read, go_write = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    setup_pid = os.fork()
    if setup_pid == 0:
        close_other_fds((*keep_fds, write_fd, go_read))
        channel = _Channel(write_fd)
        _child_main(channel, lambda: setup(channel, go_read))
    os.close(write_fd)
    os.close(go_read)
    try:
        pid = _read_reports(read_fd, setup_pid, user_maps, go_write)
    except BaseException:
        _kill_quietly(setup_pid)
        raise
    finally:
        os.close(go_write)
        os.waitpid(setup_pid, 0)
    return Spawned(pid)


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except OSError:
        pass


def _refuse_imports(event: str, args: tuple[object, ...]) -> None:
    if event in ("import", "ctypes.dlopen"):
        raise SetupError(f"refusing {event} {args[0]!r} inside the container root")


def seal_interpreter() -> None:
    """From now on any import or library load in this process fails.

    Called once the process's root is the container's: a module or library found there would be the
    image's code running with the runtime's privileges. The audit hook lasts until exec.
    """
    sys.addaudithook(_refuse_imports)


def _become_ns_root() -> None:
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def spawn_init(spec: Spec, cgroup: Cgroup, fifo_fd: int, console: socket.socket | None,
               seccomp: CompiledFilter | None, preserve_fds: int) -> Spawned:
    """Create the container's namespaces and its init, blocked until ``start``.

    Raises the engine error the children reported (InvalidParameter for a config the kernel or the
    rootfs refuses, Unavailable for a missing kernel feature).
    """
    user_ns = spec.namespace("user")
    new_user = user_ns is not None and user_ns.path is None

    def setup(channel: _Channel, go_fd: int) -> None:
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        cgroup.enter_current_thread()
        if spec.process.oom_score_adj is not None:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(spec.process.oom_score_adj))
        joins = [(ns.type, os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC))
                 for ns in spec.namespaces if ns.path is not None]
        by_type = dict(joins)
        if "user" in by_type:
            sc.setns(by_type["user"], sc.CLONE_NEWUSER)
            _become_ns_root()
        if new_user:
            sc.unshare(sc.CLONE_NEWUSER)
            channel.send(stage="userns")
            if os.read(go_fd, 1) != b"1":
                raise errors.Unavailable("the runtime did not write the user namespace id maps")
            _become_ns_root()
        os.close(go_fd)
        for kind in _JOIN_ORDER:
            if kind != "user" and kind in by_type:
                sc.setns(by_type[kind], NS_FLAGS[kind])
        flags = 0
        for ns in spec.namespaces:
            if ns.path is None and ns.type != "user":
                flags |= NS_FLAGS[ns.type]
        sc.unshare(flags)
        for _, fd in joins:
            os.close(fd)
        pid = os.fork()
        if pid:
            channel.send(pid=pid)
            os._exit(0)
        _child_main(channel, lambda: _init(spec, channel, fifo_fd, console, seccomp, preserve_fds,
                                           in_user_ns=user_ns is not None))

    maps = (spec.uid_mappings, spec.gid_mappings) if new_user else None
    return _fork_tree(setup, maps, _keep(fifo_fd, console, preserve_fds))


def _keep(fd: int | None, console: socket.socket | None, preserve_fds: int) -> tuple[int, ...]:
    keep = list(range(3, 3 + preserve_fds))
    if fd is not None:
        keep.append(fd)
    if console is not None:
        keep.append(console.fileno())
    return tuple(keep)


def _init(spec: Spec, channel: _Channel, fifo_fd: int, console: socket.socket | None,
          seccomp: CompiledFilter | None, preserve_fds: int, in_user_ns: bool) -> None:
    """The container's init: build the root, report ready, wait for ``start``, exec."""
    os.setsid()
    process = spec.process
    prepare_rootfs(spec, in_user_ns)
    seal_interpreter()
    if spec.namespace("uts") is not None:
        if spec.hostname is not None:
            sc.sethostname(spec.hostname)
        if spec.domainname is not None:
            sc.setdomainname(spec.domainname)
    if not os.path.isdir(process.cwd):
        os.makedirs(process.cwd, 0o755)
    finalize_rootfs(spec)
    executable = find_executable(process)
    apply_rlimits(process)
    if process.terminal and console is not None:
        setup_terminal(console, process)
    channel.send(ready=True)
    channel.close()
    try:
        gate = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SetupError(f"cannot open exec fifo: {exc.strerror}") from exc
    os.write(gate, b"0")
    os.close(gate)
    os.close(fifo_fd)
    finalize_and_exec(process, executable, seccomp, preserve_fds)


def spawn_exec(spec: Spec, init_pid: int, cgroup: Cgroup, process: Process,
               console: socket.socket | None, seccomp: CompiledFilter | None,
               preserve_fds: int) -> Spawned:
    """Start ``process`` inside the namespaces and cgroup of the container whose init is ``init_pid``,
    with the container's security settings. Raises what the children report."""

    def setup(channel: _Channel, go_fd: int) -> None:
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        os.close(go_fd)
        own = {kind: os.stat(f"/proc/self/ns/{NS_PROC_NAMES[kind]}").st_ino for kind in NS_FLAGS}
        fds: dict[str, int] = {}
        for ns in spec.namespaces:
            path = f"/proc/{init_pid}/ns/{NS_PROC_NAMES[ns.type]}"
            if os.stat(path).st_ino != own[ns.type]:
                fds[ns.type] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        cgroup.enter_current_thread()
        for kind in _JOIN_ORDER:
            if kind in fds:
                sc.setns(fds[kind], NS_FLAGS[kind])
                os.close(fds[kind])
                if kind == "user":
                    _become_ns_root()
        seal_interpreter()
        pid = os.fork()
        if pid:
            channel.send(pid=pid)
            os._exit(0)
        _child_main(channel, lambda: _exec_child(channel, process, console, seccomp, preserve_fds))

    return _fork_tree(setup, None, _keep(None, console, preserve_fds))


def _exec_child(channel: _Channel, process: Process, console: socket.socket | None,
                seccomp: CompiledFilter | None, preserve_fds: int) -> None:
    os.setsid()
    os.chdir("/")
    executable = find_executable(process)
    apply_rlimits(process)
    if process.terminal and console is not None:
        setup_terminal(console, process)
    channel.send(ready=True)
    channel.close()
    finalize_and_exec(process, executable, seccomp, preserve_fds)
