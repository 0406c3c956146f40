"""The OCI runtime operations (create, start, state, kill, delete, run, exec, pause, resume, ps, list,
events) over a state directory.

``Runtime`` is what the CLI and the warm fork server call. Every operation either completes or raises
an ``EngineError`` with a one-line message; a failed ``create`` leaves nothing behind (no state
directory, cgroup, mount or process).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import select
import signal
import socket
import sys
import termios
import time
import tty
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from backend.engine.errors import Conflict, InvalidParameter, NotFound, Unavailable
from backend.engine.runtime import syscalls as sc
from backend.engine.runtime.capabilities import last_cap
from backend.engine.runtime.cgroups import Cgroup, CgroupResources, DeviceRule, open_cgroup, restore_cgroup
from backend.engine.runtime.seccomp import CompiledFilter, compile_filter
from backend.engine.runtime.spawn import spawn_exec, spawn_init
from backend.engine.runtime.spec import Hook, IdMapping, Process, Spec, load_bundle, parse_config, read_json_file
from backend.engine.runtime.state import (
    OCI_VERSION,
    ContainerState,
    StateStore,
    Status,
    process_start_time,
    validate_id,
)

DEFAULT_ROOT = "/run/berth-runtime"
_FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                      signal.SIGUSR2, signal.SIGWINCH)


@dataclass(frozen=True)
class StdioFds:
    """The descriptors a foreground ``run``/``exec`` proxies a terminal to and from."""

    stdin: int = 0
    stdout: int = 1


def exit_code(status: int) -> int:
    """A wait status as a shell exit code: the code, or 128 + signal number."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class Runtime:
    """The runtime's verbs over ``root`` (one directory per container)."""

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.store = StateStore(root)

    # -- helpers -------------------------------------------------------------------------------

    def _cgroup(self, st: ContainerState) -> Cgroup:
        return restore_cgroup(st.cgroup_paths, st.cgroup_version)

    def status(self, st: ContainerState) -> Status:
        """The container's status, derived from its init process, fifo and freezer."""
        if process_start_time(st.pid) != st.pid_start:
            return Status.STOPPED
        if os.path.exists(self.store.fifo_path(st.id)):
            return Status.CREATED
        try:
            if self._cgroup(st).is_frozen():
                return Status.PAUSED
        except OSError:
            pass
        return Status.RUNNING

    def _has_hooks(self, st: ContainerState, kind: str) -> bool:
        """Whether the container's config has hooks of ``kind`` (without validating it all)."""
        try:
            raw = read_json_file(self.store.config_path(st.id), "config.json")
        except (InvalidParameter, NotFound):
            return False
        hooks = raw.get("hooks") if isinstance(raw, dict) else None
        return isinstance(hooks, dict) and bool(hooks.get(kind))

    def _spec(self, st: ContainerState) -> Spec:
        return parse_config(read_json_file(self.store.config_path(st.id), "config.json"), st.bundle)

    @staticmethod
    def _prepare_process_env() -> None:
        # Load what the children need before they enter a container root.
        sc.libc()
        last_cap()

    @staticmethod
    def _connect_console(path: str) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise InvalidParameter(f"console socket {path}: {exc.strerror}") from exc
        return sock

    def _hooks(self, spec: Spec, kind: str, st: ContainerState, status: Status, fatal: bool) -> None:
        hooks: tuple[Hook, ...] = spec.hooks.get(kind, ())
        if not hooks:
            return
        import subprocess  # hooks are rare; keep it off the start-up path

        doc = json.dumps(self._state_doc(st, status, spec.annotations)).encode()
        for hook in hooks:
            env = dict(item.split("=", 1) for item in hook.env)
            try:
                subprocess.run(list(hook.args) or [hook.path], executable=hook.path, input=doc, env=env,
                               timeout=hook.timeout, check=True, capture_output=True)
            except (OSError, subprocess.SubprocessError) as exc:
                if fatal:
                    raise Unavailable(f"{kind} hook {hook.path} failed: {exc}") from exc
                print(f"berth-runtime: warning: {kind} hook {hook.path} failed: {exc}", file=sys.stderr)

    @staticmethod
    def _state_doc(st: ContainerState, status: Status, annotations: Mapping[str, str]) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "ociVersion": OCI_VERSION, "id": st.id, "status": status.value,
            "pid": st.pid if status is not Status.STOPPED else 0,
            "bundle": st.bundle, "rootfs": st.rootfs, "created": st.created, "owner": st.owner,
        }
        if annotations:
            doc["annotations"] = dict(annotations)
        return doc

    # -- verbs ---------------------------------------------------------------------------------

    def create(self, container_id: str, bundle: str, *, console_socket: str | None = None,
               pid_file: str | None = None, preserve_fds: int = 0,
               console: socket.socket | None = None) -> int:
        """Create the container; its init waits for ``start``. Returns the init's host pid.

        Raises InvalidParameter / NotFound for bad input, Conflict if the id exists, Unavailable if
        the kernel refuses; in every case nothing is left behind.
        """
        validate_id(container_id)
        spec = load_bundle(bundle)
        if spec.namespace("mount") is None:
            raise InvalidParameter("config.json: linux.namespaces: a mount namespace is required")
        if spec.process.terminal and console is None and not console_socket:
            raise InvalidParameter("process.terminal is true: a --console-socket is needed to hand over "
                                   "the terminal")
        seccomp = compile_filter(spec.seccomp) if spec.seccomp is not None else None
        cgroup = open_cgroup(spec.cgroups_path, container_id)
        resources = with_device_defaults(spec)
        self._prepare_process_env()
        own_console = None
        if spec.process.terminal and console is None and console_socket:
            own_console = console = self._connect_console(console_socket)
        state_dir = self.store.reserve(container_id)
        pid = 0
        try:
            with open(os.path.join(state_dir, "config.json"), "w") as f:
                json.dump(spec.raw, f)
            cgroup.create(resources)
            fifo = self.store.fifo_path(container_id)
            os.mkfifo(fifo, 0o600)
            os.chown(fifo, _host_id(spec.uid_mappings, 0), _host_id(spec.gid_mappings, 0))
            fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
            try:
                pid = spawn_init(spec, cgroup, fifo_fd, console if spec.process.terminal else None,
                                 seccomp, preserve_fds).pid
            finally:
                os.close(fifo_fd)
            start = process_start_time(pid)
            if start is None:
                raise Unavailable("the container's init exited during create")
            st = ContainerState(
                id=container_id, pid=pid, pid_start=start, bundle=spec.bundle, rootfs=spec.rootfs,
                created=datetime.datetime.now(datetime.UTC).isoformat(),
                owner="root" if os.geteuid() == 0 else str(os.geteuid()),
                cgroup_version=cgroup.version, cgroup_paths=cgroup.paths(),
                annotations=dict(spec.annotations),
            )
            self.store.save(st)
            self._hooks(spec, "createRuntime", st, Status.CREATED, fatal=True)
            self._hooks(spec, "prestart", st, Status.CREATED, fatal=True)
            if pid_file:
                _write_atomic(pid_file, str(pid))
        except BaseException:
            if pid:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                cgroup.kill_all(signal.SIGKILL)
            with contextlib.suppress(Exception):
                cgroup.destroy()
            self.store.remove(container_id)
            raise
        finally:
            if own_console is not None:
                own_console.close()
            if seccomp is not None:
                seccomp.release()
        return pid

    def start(self, container_id: str) -> None:
        """Let a created container's init exec its process. Raises Conflict unless status is created."""
        st = self.store.load(container_id)
        status = self.status(st)
        if status is not Status.CREATED:
            raise Conflict(f"cannot start a container that is {status.value}")
        fifo = self.store.fifo_path(container_id)
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            while True:
                ready, _, _ = select.select([fd], [], [], 0.05)
                if ready and os.read(fd, 1):
                    break
                if process_start_time(st.pid) != st.pid_start:
                    raise Conflict("cannot start: the container's init has exited")
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(fifo)
        if self._has_hooks(st, "poststart"):
            self._hooks(self._spec(st), "poststart", st, Status.RUNNING, fatal=False)

    def state(self, container_id: str) -> dict[str, Any]:
        """The OCI state document of the container. Raises NotFound."""
        st = self.store.load(container_id)
        return self._state_doc(st, self.status(st), st.annotations)

    def kill(self, container_id: str, sig: int = signal.SIGTERM, all_processes: bool = False) -> None:
        """Send ``sig`` to the init (or every process with ``all_processes``). Raises Conflict if stopped."""
        st = self.store.load(container_id)
        if self.status(st) is Status.STOPPED:
            raise Conflict("container not running")
        if all_processes:
            self._cgroup(st).kill_all(sig)
            return
        try:
            os.kill(st.pid, sig)
        except ProcessLookupError as exc:
            raise Conflict("container not running") from exc

    def delete(self, container_id: str, force: bool = False) -> None:
        """Remove a stopped (or created) container; ``force`` kills a running one first.

        Raises NotFound, or Conflict when it is running and not forced.
        """
        st = self.store.load(container_id)
        status = self.status(st)
        cgroup = self._cgroup(st)
        if status in (Status.RUNNING, Status.PAUSED) and not force:
            raise Conflict(f"cannot delete container {container_id} that is not stopped: {status.value}")
        if status is not Status.STOPPED:
            if status is Status.PAUSED:
                cgroup.thaw()
            with contextlib.suppress(OSError):
                os.kill(st.pid, signal.SIGKILL)
            cgroup.kill_all(signal.SIGKILL)
            deadline = time.monotonic() + 5
            while process_start_time(st.pid) == st.pid_start and time.monotonic() < deadline:
                time.sleep(0.005)
        spec: Spec | None = None
        if self._has_hooks(st, "poststop"):
            with contextlib.suppress(InvalidParameter, NotFound):
                spec = self._spec(st)
        cgroup.destroy()
        self.store.remove(container_id)
        if spec is not None:
            self._hooks(spec, "poststop", st, Status.STOPPED, fatal=False)

    def pause(self, container_id: str) -> None:
        """Freeze every process of a running container. Raises Conflict otherwise."""
        st = self.store.load(container_id)
        if self.status(st) is not Status.RUNNING:
            raise Conflict("container not running")
        self._cgroup(st).freeze()

    def resume(self, container_id: str) -> None:
        """Thaw a paused container. Raises Conflict if it is not paused."""
        st = self.store.load(container_id)
        if self.status(st) is not Status.PAUSED:
            raise Conflict("container not paused")
        self._cgroup(st).thaw()

    def pids(self, container_id: str) -> list[int]:
        """Host pids of every process in the container."""
        st = self.store.load(container_id)
        return sorted(self._cgroup(st).pids())

    def list(self) -> list[dict[str, Any]]:
        """The state document of every container under the root."""
        out = []
        for cid in self.store.ids():
            with contextlib.suppress(NotFound, InvalidParameter):
                out.append(self.state(cid))
        return out

    def stats(self, container_id: str) -> dict[str, Any]:
        """A runc-style ``events --stats`` document, with the OOM-kill count under data.memory."""
        st = self.store.load(container_id)
        cgroup = self._cgroup(st)
        return {
            "type": "stats", "id": container_id,
            "data": {
                "memory": {"usage": {"usage": cgroup.memory_usage() or 0},
                           "oom_kill": cgroup.oom_kill_count()},
                "pids": {"current": len(cgroup.pids())},
            },
        }

    def events(self, container_id: str, interval: float, out: TextIO) -> None:
        """Print stats every ``interval`` seconds and an ``oom`` event for each new OOM kill, until
        the container stops."""
        st = self.store.load(container_id)
        cgroup = self._cgroup(st)
        ooms = cgroup.oom_kill_count()
        next_stats = 0.0
        while self.status(st) is not Status.STOPPED:
            count = cgroup.oom_kill_count()
            if count > ooms:
                ooms = count
                print(json.dumps({"type": "oom", "id": container_id}), file=out, flush=True)
            if time.monotonic() >= next_stats:
                print(json.dumps(self.stats(container_id)), file=out, flush=True)
                next_stats = time.monotonic() + interval
            time.sleep(0.1)

    def run(self, container_id: str, bundle: str, *, console_socket: str | None = None,
            pid_file: str | None = None, detach: bool = False, preserve_fds: int = 0,
            stdio: StdioFds = StdioFds()) -> int:
        """create + start; in the foreground wait, then delete, and return the exit code
        (128 + signal when killed). Signals received are forwarded to the container."""
        if not detach:
            sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        with _terminal_pair(bundle, console_socket, detach) as (ours, theirs):
            pid = self.create(container_id, bundle, console_socket=console_socket, pid_file=pid_file,
                              preserve_fds=preserve_fds, console=theirs)
            master = _receive_master(ours) if ours is not None else None
            try:
                self.start(container_id)
            except BaseException:
                self.delete(container_id, force=True)
                raise
        if detach:
            return 0
        try:
            return _wait_foreground(pid, master, stdio)
        finally:
            self.delete(container_id, force=True)

    def exec(self, container_id: str, process: Process, *, console_socket: str | None = None,
             pid_file: str | None = None, detach: bool = False, preserve_fds: int = 0,
             stdio: StdioFds = StdioFds()) -> int:
        """Run ``process`` in a created or running container, joining all its namespaces and its
        cgroup with its seccomp profile. Returns its exit code in the foreground, 0 detached."""
        st = self.store.load(container_id)
        status = self.status(st)
        if status not in (Status.CREATED, Status.RUNNING):
            raise Conflict(f"cannot exec in a container that is {status.value}")
        spec = self._spec(st)
        if process.terminal and detach and not console_socket:
            raise InvalidParameter("exec with a terminal in detached mode needs --console-socket")
        seccomp: CompiledFilter | None = compile_filter(spec.seccomp) if spec.seccomp else None
        self._prepare_process_env()
        if not detach:
            sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        try:
            with _terminal_pair(None, console_socket, detach, terminal=process.terminal) as (ours, theirs):
                console = theirs
                if process.terminal and console_socket:
                    console = self._connect_console(console_socket)
                pid = spawn_exec(spec, st.pid, self._cgroup(st), process,
                                 console if process.terminal else None, seccomp, preserve_fds).pid
                if console is not None and console is not theirs:
                    console.close()
                master = _receive_master(ours) if ours is not None else None
        finally:
            if seccomp is not None:
                seccomp.release()
        if pid_file:
            _write_atomic(pid_file, str(pid))
        if detach:
            return 0
        return _wait_foreground(pid, master, stdio)


# Devices every container may use, whatever the config's device rules say (as runc allows them):
# mknod of any node, the default /dev nodes, the pty master and slaves, and /dev/net/tun.
_ALWAYS_ALLOWED = (
    DeviceRule(True, "c", None, None, "m"), DeviceRule(True, "b", None, None, "m"),
    *(DeviceRule(True, "c", 1, minor, "rwm") for minor in (3, 5, 7, 8, 9)),
    DeviceRule(True, "c", 5, 0, "rwm"), DeviceRule(True, "c", 5, 1, "rwm"), DeviceRule(True, "c", 5, 2, "rwm"),
    DeviceRule(True, "c", 136, None, "rwm"), DeviceRule(True, "c", 10, 200, "rwm"),
)


def with_device_defaults(spec: Spec) -> CgroupResources:
    """The config's cgroup resources with the always-allowed devices and ``linux.devices`` appended
    (a later rule wins in the device cgroup, so these come last)."""
    rules = list(spec.resources.devices)
    if not rules:
        return spec.resources
    rules += _ALWAYS_ALLOWED
    rules += [DeviceRule(True, d.type, d.major, d.minor, "rwm") for d in spec.devices if d.type in "cb"]
    return dataclasses.replace(spec.resources, devices=tuple(rules))


def _host_id(mappings: tuple[IdMapping, ...], container_id: int) -> int:
    """The host id that ``container_id`` maps to (itself without a user namespace, or unmapped)."""
    for m in mappings:
        if m.container_id <= container_id < m.container_id + m.size:
            return m.host_id + container_id - m.container_id
    return container_id


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


@contextlib.contextmanager
def _terminal_pair(bundle: str | None, console_socket: str | None, detach: bool,
                   terminal: bool | None = None) -> Iterator[tuple[socket.socket | None, socket.socket | None]]:
    """A socket pair to receive the pty master when the caller itself will proxy the terminal
    (foreground with a terminal and no --console-socket); (None, None) otherwise."""
    if terminal is None and bundle is not None:
        terminal = load_bundle(bundle).process.terminal
    if not terminal or console_socket or detach:
        yield None, None
        return
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        yield ours, theirs
    finally:
        ours.close()
        theirs.close()


def _receive_master(sock: socket.socket) -> int:
    _, fds, _, _ = socket.recv_fds(sock, 64, 1)
    if not fds:
        raise Unavailable("the container did not send its terminal")
    return fds[0]


def _wait_foreground(pid: int, master: int | None, stdio: StdioFds) -> int:
    """Wait for ``pid`` (reparented to us as subreaper), forwarding signals and proxying the pty."""
    previous = {sig: signal.getsignal(sig) for sig in _FORWARDED_SIGNALS}

    def forward(signum: int, _frame: object) -> None:
        if signum == signal.SIGWINCH and master is not None:
            _copy_winsize(stdio.stdin, master)
            return
        with contextlib.suppress(OSError):
            os.kill(pid, signum)

    for sig in _FORWARDED_SIGNALS:
        signal.signal(sig, forward)
    saved_tty = None
    try:
        if master is None:
            while True:
                done, status = os.waitpid(pid, 0)
                if done == pid:
                    return exit_code(status)
        if os.isatty(stdio.stdin):
            saved_tty = termios.tcgetattr(stdio.stdin)
            tty.setraw(stdio.stdin)
            _copy_winsize(stdio.stdin, master)
        return _proxy(pid, master, stdio)
    finally:
        if saved_tty is not None:
            termios.tcsetattr(stdio.stdin, termios.TCSADRAIN, saved_tty)
        if master is not None:
            os.close(master)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _copy_winsize(src: int, dst: int) -> None:
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)


def _proxy(pid: int, master: int, stdio: StdioFds) -> int:
    inputs = [master, stdio.stdin]
    status: int | None = None
    while True:
        if status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                status = st
        try:
            ready, _, _ = select.select(inputs, [], [], 0.05)
        except InterruptedError:
            continue
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            if data:
                os.write(stdio.stdout, data)
                continue
            inputs.remove(master)
        if stdio.stdin in ready:
            data = os.read(stdio.stdin, 65536)
            if data:
                os.write(master, data)
            else:
                inputs.remove(stdio.stdin)
        if status is not None and (master not in inputs or not ready):
            return exit_code(status)
