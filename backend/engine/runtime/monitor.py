"""The container monitor: one small long-lived process per container (as conmon or containerd-shim).

It holds the container's stdio and pty, writes its json-file log, serves attach/start/wait/resize on a
unix socket and records the exit status, so that berthd can stop, crash or be upgraded while the
container runs. It is started by the engine (``monitor_client.MonitorHandle.spawn``)::

    python -m backend.engine.runtime.monitor --dir STATE_DIR --id ID --bundle BUNDLE --runtime RUNTIME
        [--runtime-root R] [--tty] [--stdin] [--stdin-once] [--log-max-size BYTES] [--log-max-files N]
        [--ready-fd FD] [--foreground] [--runtime-inproc]

With ``--runtime-inproc`` (for berth-runtime only) the runtime's verbs run in forked children of the
monitor instead of new processes.

Unless ``--foreground``, it daemonizes (fork, setsid, fork; stdin/stdout on /dev/null, stderr appended
to ``STATE_DIR/monitor.log``). Its working directory is ``STATE_DIR``. It becomes a child subreaper,
runs ``RUNTIME [--root R] --log STATE_DIR/runtime.log --log-format json create --bundle BUNDLE
[--console-socket S] --pid-file STATE_DIR/container.pid ID`` (the container's stdout and stderr are
pipes to the monitor and its stdin a pipe from it with ``--stdin``, else /dev/null; with ``--tty`` the
runtime sends the pty master over the console socket ``S``), and the container's init, reparented to
the monitor, is waited for by the monitor. With ``--ready-fd`` it writes one JSON line there once the
container is created (``{"ok": true, "pid": N}``) or creation failed (``{"ok": false, "error": MSG,
"kind": KIND}``) and closes it.

Files in STATE_DIR (JSON files are replaced atomically: temp file, rename; exit.json is fsynced):

- ``monitor.pid``: the monitor's pid. ``container.pid``: the init's host pid (written by the runtime).
- ``status.json``: the status document below plus ``id``, ``tty``, ``stdin``, ``monitor_pid`` and
  ``monitor_start`` (start time in clock ticks, to tell a reused pid); rewritten on each transition.
- ``exit.json``: ``{"exit_code": N, "oom_killed": bool, "finished_at": TIME}``, written when the init
  has exited, before the log is closed and before ``RUNTIME delete ID``. It is what the engine reads
  when the monitor is gone.
- ``container-json.log`` (``.1``, ``.2``... when rotated): the json-file log (``logfile.py``).
- ``monitor.sock`` (mode 0600): the control socket, removed when the monitor exits.
- ``runtime.log`` (the runtime's own errors), ``monitor.log`` (the monitor's).

Status document: ``{"state": "created"|"running"|"exited", "pid": N, "exit_code": N|null,
"oom_killed": bool, "started_at": TIME|null, "finished_at": TIME|null}``. TIME is RFC 3339 with
nanoseconds, UTC. The state is "exited" once exit.json is written. ``exit_code`` is the init's exit code,
or 128 + the signal that killed it. ``oom_killed`` is true when the kernel's OOM killer killed a process
of the container's memory cgroup (counted by the cgroup's ``oom_kill`` counter, read before delete; if
the cgroup files cannot be found, ``RUNTIME events --stats ID``'s ``data.memory.oom_kill``).

Protocol on ``monitor.sock`` (version 1). One request per connection. The client sends one JSON object
on one line (UTF-8, ``\\n``-terminated, at most 64 KiB); the monitor answers one JSON line, then:

- ``{"op": "status"}`` -> ``{"ok": true, "status": STATUS}``; closed.
- ``{"op": "start"}`` -> runs ``RUNTIME start ID``; ``{"ok": true, "status": STATUS}``; closed.
- ``{"op": "wait"}`` -> answered when the container has exited (exit.json written, log closed, runtime
  ``delete`` done): ``{"ok": true, "status": STATUS}``; closed.
- ``{"op": "resize", "rows": R, "cols": C}`` -> TIOCSWINSZ on the pty master; ``{"ok": true}``; closed.
- ``{"op": "attach", "stdin": bool, "stdout": bool, "stderr": bool}`` -> ``{"ok": true, "tty": bool,
  "stdin": bool}`` (``stdin``: whether the client's input reaches the container), then raw streams until
  the container exits (or the client goes):

  * monitor to client: with a tty, the pty's output bytes as they are. Without a tty, Docker's stdcopy
    frames: an 8-byte header (stream: 1 stdout, 2 stderr; three zero bytes; payload length as a 32-bit
    big-endian unsigned) followed by the payload. Output produced while a client is attached is sent
    to it; earlier output is in the log only. A client more than 4 MiB behind is disconnected (the
    container never blocks on a slow client).
  * client to monitor (``"stdin": true`` and the monitor runs with ``--stdin``): bytes for the
    container's stdin (the pty with a tty). End of the client's data (``shutdown(SHUT_WR)`` or close)
    closes the container's stdin with ``--stdin-once`` (with a tty: sends ``^D``, the terminal's EOF),
    else it just ends that client's input. Bytes after the request line in the same write are stdin.
  * after the container exits and its output is sent, the monitor closes the connection.

Errors: ``{"ok": false, "error": MESSAGE, "kind": KIND}`` and close; KIND is ``"invalid"`` (malformed
request), ``"conflict"`` (wrong state: start twice, attach after exit, resize without a tty) or
``"unavailable"`` (the runtime failed; MESSAGE is its error).

Cost: the monitor imports only the standard library modules it needs (no asyncio, typing, dataclasses,
argparse or subprocess) plus ``logfile`` and ``syscalls``; its event loop is a plain epoll loop.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys
import termios
import time

from backend.engine.runtime import syscalls
from backend.engine.runtime.logfile import JsonLogWriter, format_time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

PROTOCOL_VERSION = 1
LOG_NAME = "container-json.log"
SOCKET_NAME = "monitor.sock"
STATUS_NAME = "status.json"
EXIT_NAME = "exit.json"
MONITOR_PID_NAME = "monitor.pid"
CONTAINER_PID_NAME = "container.pid"
RUNTIME_LOG_NAME = "runtime.log"
MONITOR_LOG_NAME = "monitor.log"
CONSOLE_NAME = "console.sock"

CREATING, CREATED, RUNNING, EXITED = "creating", "created", "running", "exited"

MAX_REQUEST = 64 * 1024
CLIENT_BUFFER_LIMIT = 4 << 20
STDIN_BUFFER_LIMIT = 1 << 16
READ_SIZE = 1 << 16
OUTPUT_DRAIN_SECONDS = 2.0
CLIENT_FLUSH_SECONDS = 5.0
_STDOUT, _STDERR = 1, 2
_STREAM_IDS = {"stdout": _STDOUT, "stderr": _STDERR}
_ERR = select.EPOLLERR | select.EPOLLHUP
# Every signal is reset to its default for a spawned runtime, so that the container does not inherit
# what the monitor (or whoever started it) ignores: Python ignores SIGPIPE and SIGXFSZ, the monitor SIGINT
# and SIGHUP, and a background shell SIGQUIT.
MONITOR_COMM = b"berth-monitor"
"""The monitor's process name (``/proc/PID/comm``), also when forked from the fork server."""
_RESET_SIGNALS = tuple(sorted(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}))
_USAGE = ("usage: python -m backend.engine.runtime.monitor --dir DIR --id ID --bundle BUNDLE --runtime PATH "
          "[--runtime-root R] [--tty] [--stdin] [--stdin-once] [--log-max-size BYTES] [--log-max-files N] "
          "[--ready-fd FD] [--foreground] [--runtime-inproc]")


class UsageError(Exception):
    """The command line is malformed."""


class MonitorConfig:
    """What one monitor runs. ``log_max_size`` <= 0: no rotation; ``log_max_files`` counts all files."""

    __slots__ = ("bundle", "container_id", "inproc", "log_max_files", "log_max_size", "runtime", "runtime_root",
                 "state_dir", "stdin", "stdin_once", "tty")

    def __init__(self, state_dir: str, container_id: str, bundle: str, runtime: str, *,
                 runtime_root: str | None = None, tty: bool = False, stdin: bool = False,
                 stdin_once: bool = False, log_max_size: int = 0, log_max_files: int = 1,
                 inproc: bool = False) -> None:
        if log_max_files < 1:
            raise UsageError("--log-max-files must be at least 1")
        self.state_dir = os.path.abspath(state_dir)
        self.container_id = container_id
        self.bundle = os.path.abspath(bundle)
        self.runtime = runtime
        self.runtime_root = os.path.abspath(runtime_root) if runtime_root else None
        self.tty = tty
        self.stdin = stdin
        self.stdin_once = stdin_once
        self.log_max_size = log_max_size
        self.log_max_files = log_max_files
        self.inproc = inproc

    def argv(self) -> list[str]:
        """The command-line flags that describe this configuration (for ``parse_args``)."""
        args = ["--dir", self.state_dir, "--id", self.container_id, "--bundle", self.bundle,
                "--runtime", self.runtime]
        if self.runtime_root:
            args += ["--runtime-root", self.runtime_root]
        args += [flag for flag, on in (("--tty", self.tty), ("--stdin", self.stdin),
                                       ("--stdin-once", self.stdin_once), ("--runtime-inproc", self.inproc)) if on]
        return [*args, "--log-max-size", str(self.log_max_size), "--log-max-files", str(self.log_max_files)]


def parse_args(argv: Sequence[str]) -> tuple[MonitorConfig, int | None, bool]:
    """``(config, ready_fd, foreground)`` from the command line. Raises UsageError."""
    values: dict[str, str] = {}
    flags: set[str] = set()
    with_value = {"--dir", "--id", "--bundle", "--runtime", "--runtime-root", "--log-max-size",
                  "--log-max-files", "--ready-fd"}
    booleans = {"--tty", "--stdin", "--stdin-once", "--foreground", "--runtime-inproc"}
    items = list(argv)
    i = 0
    while i < len(items):
        name, eq, value = items[i].partition("=")
        if name in with_value:
            if not eq:
                i += 1
                if i >= len(items):
                    raise UsageError(f"{name} needs a value")
                value = items[i]
            values[name] = value
        elif name in booleans and not eq:
            flags.add(name)
        else:
            raise UsageError(f"unknown argument {items[i]!r}")
        i += 1
    missing = [n for n in ("--dir", "--id", "--bundle", "--runtime") if n not in values]
    if missing:
        raise UsageError(f"missing {', '.join(missing)}")
    try:
        size = int(values.get("--log-max-size", "0"))
        files = int(values.get("--log-max-files", "1"))
        ready = int(values["--ready-fd"]) if "--ready-fd" in values else None
    except ValueError as exc:
        raise UsageError(f"not a number: {exc}") from None
    config = MonitorConfig(values["--dir"], values["--id"], values["--bundle"], values["--runtime"],
                           runtime_root=values.get("--runtime-root"), tty="--tty" in flags,
                           stdin="--stdin" in flags, stdin_once="--stdin-once" in flags,
                           log_max_size=size, log_max_files=files, inproc="--runtime-inproc" in flags)
    return config, ready, "--foreground" in flags


# ---------------------------------------------------------------------------------------------------
# small helpers


def _note(message: str) -> None:
    """A line in the monitor's own log (its stderr)."""
    try:
        sys.stderr.write(f"{format_time(time.time_ns())} monitor[{os.getpid()}]: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _now() -> str:
    return format_time(time.time_ns())


def write_json_atomic(path: str, doc: object, *, durable: bool = False) -> None:
    """Replace ``path`` with ``doc`` as JSON: temp file, (fsync of file and directory), rename."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(doc).encode() + b"\n")
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    if durable:
        dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def exit_code_of(status: int) -> int:
    """A wait status as a shell exit code: the code, or 128 + the signal number."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def process_start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat; None for no such process or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()
    return None if fields[0] in (b"Z", b"X") else int(fields[19])


def _cgroup_mounts() -> tuple[dict[str, str], str | None]:
    """(v1 controller -> mount point, v2 mount point) from /proc/self/mountinfo."""
    v1: dict[str, str] = {}
    v2: str | None = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(fields) < 5 or len(rfields) < 3 or fields[3] != "/":
                continue
            if rfields[0] == "cgroup2":
                v2 = v2 or fields[4]
            elif rfields[0] == "cgroup":
                for option in rfields[2].split(","):
                    v1.setdefault(option, fields[4])
    return v1, v2


def oom_counter_files(pid: int) -> list[str]:
    """The files holding the OOM-kill count of ``pid``'s memory cgroup: ``memory.oom_control`` (v1)
    and/or ``memory.events`` (v2), those that exist."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
        v1, v2 = _cgroup_mounts()
    except OSError:
        return []
    found = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and not controllers and v2:
            candidate = os.path.join(v2, path.lstrip("/"), "memory.events")
        elif "memory" in controllers.split(",") and "memory" in v1:
            candidate = os.path.join(v1["memory"], path.lstrip("/"), "memory.oom_control")
        else:
            continue
        if read_oom_kills(candidate) is not None:
            found.append(candidate)
    return found


def read_oom_kills(path: str) -> int | None:
    """The ``oom_kill N`` count of a memory.events / memory.oom_control file; None if unreadable."""
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        return None
    return None


def _runtime_error(log_path: str, offset: int, stderr: bytes, fallback: str) -> str:
    """The runtime's error message: the last error in its JSON log after ``offset``, else the last line
    of its stderr, else ``fallback``."""
    message = ""
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            for raw in f.read().splitlines():
                try:
                    doc = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(doc, dict) and doc.get("level") in ("error", "fatal") and doc.get("msg"):
                    message = str(doc["msg"])
    except OSError:
        pass
    if not message:
        lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        message = lines[-1] if lines else ""
    return message or fallback


# ---------------------------------------------------------------------------------------------------
# the monitor


class _Job:
    """A runtime command the monitor runs without blocking; ``on_done(exit_code, stdout, stderr)``."""

    __slots__ = ("on_done", "out", "pid", "pipes")

    def __init__(self, on_done: Callable[[int, bytes, bytes], None]) -> None:
        self.on_done = on_done
        self.pid = 0
        self.pipes: dict[int, bytearray] = {}  # read end -> what was read from it
        self.out: list[int] = []  # the read end of a captured stdout


class _Client:
    """One connection on the control socket."""

    __slots__ = ("closing", "fd", "inbuf", "op", "outbuf", "reading", "sock", "stderr", "stdin", "stdout")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.op = ""
        self.reading = True
        self.closing = False
        self.stdin = self.stdout = self.stderr = False


class Monitor:
    """The monitor's event loop over one container. ``run()`` returns the process exit code: 0 once the
    container has exited and been recorded, 1 if it could not be created."""

    def __init__(self, config: MonitorConfig, ready_fd: int | None = None) -> None:
        self.cfg = config
        self.dir = config.state_dir
        self.ready_fd = ready_fd
        self.epoll = select.epoll()
        self.handlers: dict[int, Callable[[int], None]] = {}
        self.masks: dict[int, int] = {}
        self.children: dict[int, Callable[[int], None]] = {}
        self.reaped: dict[int, int] = {}
        self.state = CREATING
        self.init_pid = 0
        self.init_status: int | None = None
        self.exit_code: int | None = None
        self.oom_killed = False
        self.started_at: str | None = None
        self.finished_at: str | None = None
        self.outputs: dict[int, str] = {}
        self.master: int | None = None
        self.stdin_fd: int | None = None
        self.stdin_buf = bytearray()
        self.stdin_eof = False
        self.clients: dict[int, _Client] = {}
        self.listener: socket.socket | None = None
        self.start_job: _Job | None = None
        self.start_waiters: list[_Client] = []
        self.oom_files: dict[str, int] = {}
        self.creating_output = bytearray()
        self.finishing = False
        self.deleted = False
        self.output_deadline: float | None = None
        self.exit_deadline: float | None = None
        self.done = False
        self.result = 0
        self.log: JsonLogWriter | None = None
        self.log_failed = False
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.wakeup_r, self.wakeup_w = os.pipe()
        self.runtime_log = os.path.join(self.dir, RUNTIME_LOG_NAME)
        self.monitor_start = process_start_ticks(os.getpid())

    # -- loop ----------------------------------------------------------------------------------

    def _watch(self, fd: int, mask: int, handler: Callable[[int], None] | None = None) -> None:
        if handler is not None:
            self.handlers[fd] = handler
        if fd in self.masks:
            if self.masks[fd] != mask:
                self.epoll.modify(fd, mask)
        else:
            self.epoll.register(fd, mask)
        self.masks[fd] = mask

    def _unwatch(self, fd: int) -> None:
        if self.masks.pop(fd, None) is not None:
            try:
                self.epoll.unregister(fd)
            except OSError:
                pass
        self.handlers.pop(fd, None)

    def run(self) -> int:
        """Create the container and serve until it has exited. Returns the exit code of the monitor."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        os.chdir(self.dir)
        for stale in (EXIT_NAME, STATUS_NAME, SOCKET_NAME):  # from an earlier run in this directory
            try:
                os.unlink(stale)
            except FileNotFoundError:
                pass
        if self.ready_fd is not None:
            os.set_inheritable(self.ready_fd, False)
        write_json_atomic(os.path.join(self.dir, MONITOR_PID_NAME), os.getpid())
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
        with contextlib.suppress(OSError), open("/proc/self/comm", "wb") as comm:
            comm.write(MONITOR_COMM)
        os.set_blocking(self.wakeup_w, False)
        os.set_blocking(self.wakeup_r, False)
        signal.set_wakeup_fd(self.wakeup_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        for sig in (signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        self._watch(self.wakeup_r, select.EPOLLIN, self._on_wakeup)
        try:
            self.log = JsonLogWriter(os.path.join(self.dir, LOG_NAME), self.cfg.log_max_size,
                                     self.cfg.log_max_files)
            self._create()
        except Exception as exc:
            self._fail_create(f"monitor: {exc}", "unavailable")
        while not self.done:
            timeout = self._timeout()
            try:
                events = self.epoll.poll(timeout)
            except InterruptedError:
                continue
            for fd, mask in events:
                handler = self.handlers.get(fd)
                if handler is not None:
                    self._call(handler, mask)
            self._timers()
        self._close()
        return self.result

    def _close(self) -> None:
        """Release what the loop used (for a monitor run as a function inside a longer-lived process)."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in (self.wakeup_r, self.wakeup_w, self.devnull):
            os.close(fd)
        self.epoll.close()

    @staticmethod
    def _call(handler: Callable[[int], None], mask: int) -> None:
        # A bug in one handler must not take the container's monitor down with it.
        try:
            handler(mask)
        except Exception as exc:
            import traceback

            _note(f"internal error: {exc!r}\n{traceback.format_exc()}")

    def _timeout(self) -> float:
        deadlines = [d for d in (self.output_deadline, self.exit_deadline) if d is not None]
        if not deadlines:
            return -1
        return max(0.0, min(deadlines) - time.monotonic())

    def _timers(self) -> None:
        now = time.monotonic()
        if self.output_deadline is not None and now >= self.output_deadline:
            self.output_deadline = None
            for fd in list(self.outputs):
                self._close_output(fd)
            self._maybe_finish()
        if self.exit_deadline is not None and now >= self.exit_deadline:
            for client in list(self.clients.values()):
                self._drop(client)
            self._check_done()

    def _on_wakeup(self, _mask: int) -> None:
        try:
            while os.read(self.wakeup_r, 512):
                pass
        except BlockingIOError:
            pass
        self._reap()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            callback = self.children.pop(pid, None)
            if callback is not None:
                callback(status)
            elif not self.init_pid:
                self.reaped[pid] = status  # perhaps the init, before its pid file is read
            # else an orphan reparented to this subreaper: reaped, nothing to record

    # -- runtime commands ----------------------------------------------------------------------

    def _runtime_argv(self, *verb: str) -> list[str]:
        argv = [self.cfg.runtime]
        if self.cfg.runtime_root:
            argv += ["--root", self.cfg.runtime_root]
        return [*argv, "--log", self.runtime_log, "--log-format", "json", *verb]

    def _spawn(self, argv: list[str], stdio: tuple[int, int, int]) -> int:
        if self.cfg.inproc:
            return self._fork_runtime(argv[1:], stdio)
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(stdio)]
        return os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions,
                               setsigdef=_RESET_SIGNALS, setsigmask=())

    def _fork_runtime(self, argv: list[str], stdio: tuple[int, int, int]) -> int:
        """``--runtime-inproc``: run berth-runtime's CLI in a forked child of this process (no interpreter
        start-up; warm when this monitor was forked from the fork server). The container's init, forked
        by it, is reparented to this monitor (a subreaper) as with a separate runtime process."""
        from backend.engine.runtime.forkserver import run_command

        pid = os.fork()
        if pid:
            return pid
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in _RESET_SIGNALS:
                with contextlib.suppress(OSError, ValueError):
                    signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, ())
            for target, fd in enumerate(stdio):
                os.dup2(fd, target)
            code = run_command(argv)
        finally:
            os._exit(code & 0xFF)

    def _job(self, verb: Sequence[str], on_done: Callable[[int, bytes, bytes], None], *,
             stdio: tuple[int, int, int] | None = None, capture_stdout: bool = False) -> _Job:
        """Run ``RUNTIME ... VERB``; stdio defaults to /dev/null in and out and a captured stderr."""
        job = _Job(on_done)
        child_ends = []
        if stdio is None:
            out = self.devnull
            if capture_stdout:
                r, out = os.pipe()
                job.pipes[r] = bytearray()
                job.out.append(r)
                child_ends.append(out)
            r, err = os.pipe()
            job.pipes[r] = bytearray()
            child_ends.append(err)
            stdio = (self.devnull, out, err)
        try:
            job.pid = self._spawn(self._runtime_argv(*verb), stdio)
        except OSError:
            for fd in (*child_ends, *job.pipes):
                os.close(fd)
            raise
        finally:
            for fd in child_ends:
                if job.pid:
                    os.close(fd)
        for fd in job.pipes:
            os.set_blocking(fd, False)
            self._watch(fd, select.EPOLLIN, self._job_reader(job, fd))
        self.children[job.pid] = lambda status: self._job_exited(job, status)
        return job

    def _job_reader(self, job: _Job, fd: int) -> Callable[[int], None]:
        return lambda _mask: self._job_read(job, fd)

    def _job_read(self, job: _Job, fd: int) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            job.pipes[fd] += data
        else:
            self._unwatch(fd)

    def _job_exited(self, job: _Job, status: int) -> None:
        # Whatever the runtime wrote is in the pipes now; a process it left behind (the container init)
        # may still hold a write end, so do not wait for end of file.
        for fd, buf in job.pipes.items():
            try:
                while chunk := os.read(fd, READ_SIZE):
                    buf += chunk
            except OSError:
                pass
            self._unwatch(fd)
            os.close(fd)
        out = b"".join(job.pipes[fd] for fd in job.out)
        err = b"".join(buf for fd, buf in job.pipes.items() if fd not in job.out)
        job.on_done(exit_code_of(status), out, err)

    # -- create ----------------------------------------------------------------------------------

    def _short_path(self, name: str) -> str:
        """A path for ``name`` in the state directory short enough for a unix socket address."""
        path = os.path.join(self.dir, name)
        return path if len(path) < 100 else f"/proc/{os.getpid()}/cwd/{name}"

    def _create(self) -> None:
        pid_file = os.path.join(self.dir, CONTAINER_PID_NAME)
        try:
            os.unlink(pid_file)
        except FileNotFoundError:
            pass
        verb = ["create", "--bundle", self.cfg.bundle]
        console: socket.socket | None = None
        child_ends: list[int] = []
        if self.cfg.tty:
            console = self._bind(CONSOLE_NAME, 1)
            verb += ["--console-socket", self._short_path(CONSOLE_NAME)]
            stdio = None
        else:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            in_r = self.devnull
            if self.cfg.stdin:
                in_r, in_w = os.pipe()
                child_ends.append(in_r)
                self.stdin_fd = in_w
                os.set_blocking(in_w, False)
            child_ends += [out_w, err_w]
            stdio = (in_r, out_w, err_w)
            for fd, stream in ((out_r, "stdout"), (err_r, "stderr")):
                os.set_blocking(fd, False)
                self.outputs[fd] = stream
                self._watch(fd, select.EPOLLIN, self._output_reader(fd))
        verb += ["--pid-file", pid_file, self.cfg.container_id]
        offset = self._runtime_log_size()
        try:
            self._job(verb, lambda code, _o, err: self._created(code, err, offset, console),
                      stdio=stdio)
        finally:
            for fd in child_ends:
                os.close(fd)

    def _runtime_log_size(self) -> int:
        try:
            return os.stat(self.runtime_log).st_size
        except OSError:
            return 0

    def _bind(self, name: str, backlog: int) -> socket.socket:
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(name)  # relative: the working directory is the state directory
        finally:
            os.umask(old)
        sock.listen(backlog)
        return sock

    def _created(self, code: int, stderr: bytes, offset: int, console: socket.socket | None) -> None:
        try:
            if code != 0:
                self._drain_outputs()
                message = _runtime_error(self.runtime_log, offset, stderr + bytes(self.creating_output),
                                         f"{self.cfg.runtime} create exited with code {code}")
                self._fail_create(message, "unavailable")
                return
            if console is not None:
                self.master = self._receive_master(console)
                self.outputs[self.master] = "stdout"
                os.set_blocking(self.master, False)
                self._watch(self.master, select.EPOLLIN, self._on_master)
                if self.cfg.stdin:
                    self.stdin_fd = self.master
            with open(os.path.join(self.dir, CONTAINER_PID_NAME)) as f:
                self.init_pid = int(f.read().strip())
            self.oom_files = {p: read_oom_kills(p) or 0 for p in oom_counter_files(self.init_pid)}
            if self.creating_output:
                _note(f"runtime output during create: {bytes(self.creating_output)!r}")
                self.creating_output.clear()
            self.listener = self._bind(SOCKET_NAME, 64)
            self.listener.setblocking(False)
            self._watch(self.listener.fileno(), select.EPOLLIN, self._on_accept)
            self.state = CREATED
            self._write_status()
        except Exception as exc:
            self._fail_create(f"monitor: {exc}", "unavailable")
            return
        finally:
            if console is not None:
                console.close()
                try:
                    os.unlink(CONSOLE_NAME)
                except FileNotFoundError:
                    pass
        if self.init_pid in self.reaped:
            self._init_exited(self.reaped.pop(self.init_pid))
        else:
            self.children[self.init_pid] = self._init_exited
        self._ready({"ok": True, "pid": self.init_pid})

    def _receive_master(self, console: socket.socket) -> int:
        console.settimeout(5)
        conn, _ = console.accept()
        with conn:
            conn.settimeout(5)
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
        if not fds:
            raise OSError(errno.EPROTO, "the runtime sent no terminal over the console socket")
        for extra in fds[1:]:
            os.close(extra)
        os.set_inheritable(fds[0], False)
        return fds[0]

    def _ready(self, doc: dict[str, object]) -> None:
        if self.ready_fd is None:
            return
        try:
            os.write(self.ready_fd, json.dumps(doc).encode() + b"\n")
        except OSError:
            pass
        os.close(self.ready_fd)
        self.ready_fd = None

    def _fail_create(self, message: str, kind: str) -> None:
        _note(f"create failed: {message}")
        self._ready({"ok": False, "error": message, "kind": kind})
        for fd in list(self.outputs):
            self._close_output(fd)
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            try:
                os.unlink(os.path.join(self.dir, SOCKET_NAME))
            except FileNotFoundError:
                pass
        if self.log is not None:
            self.log.close()
        self.result = 1
        self.done = True
        # a half-created container (a runtime killed mid-way) must not outlive its monitor
        try:
            self._spawn_wait(self._runtime_argv("delete", "--force", self.cfg.container_id))
        except OSError:
            pass
        try:
            os.unlink(os.path.join(self.dir, MONITOR_PID_NAME))
        except FileNotFoundError:
            pass

    def _spawn_wait(self, argv: list[str]) -> int:
        pid = self._spawn(argv, (self.devnull, self.devnull, self.devnull))
        _, status = os.waitpid(pid, 0)
        return exit_code_of(status)

    # -- container output and input ------------------------------------------------------------

    def _output_reader(self, fd: int) -> Callable[[int], None]:
        return lambda mask: self._on_output(fd, mask)

    def _on_output(self, fd: int, _mask: int) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO: the pty's last slave was closed
        self._output(fd, data)

    def _drain_outputs(self) -> None:
        """Take in what the outputs hold now, up to where they would block or end."""
        for fd in list(self.outputs):
            while fd in self.outputs:
                try:
                    data = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    break
                except OSError:
                    data = b""
                self._output(fd, data)

    def _output(self, fd: int, data: bytes) -> None:
        stream = self.outputs.get(fd)
        if stream is None:
            return
        if not data:
            self._close_output(fd)
            self._maybe_finish()
            return
        if self.state == CREATING:
            self.creating_output += data
            return
        if self.log is not None and not self.log.closed:
            try:
                self.log.write(stream, data)
            except OSError as exc:
                if not self.log_failed:
                    _note(f"cannot write the log: {exc}")
                self.log_failed = True
        frame = data if self.master is not None else struct.pack(">BxxxI", _STREAM_IDS[stream], len(data)) + data
        for client in list(self.clients.values()):
            if client.op == "attach" and (client.stdout if stream == "stdout" else client.stderr):
                self._send(client, frame)

    def _on_master(self, mask: int) -> None:
        if mask & select.EPOLLOUT:
            self._flush_stdin()
        if mask & (select.EPOLLIN | _ERR) and self.master in self.outputs:
            assert self.master is not None
            self._on_output(self.master, mask)
        elif mask & _ERR and self.master is not None and self.master not in self.outputs:
            self._update_master()

    def _update_master(self) -> None:
        if self.master is None:
            return
        mask = (select.EPOLLIN if self.master in self.outputs else 0) | \
            (select.EPOLLOUT if self.stdin_buf and self.stdin_fd == self.master else 0)
        if mask:
            self._watch(self.master, mask, self._on_master)
        else:
            self._unwatch(self.master)

    def _close_output(self, fd: int) -> None:
        stream = self.outputs.pop(fd, None)
        if stream is None:
            return
        if self.log is not None and not self.log.closed:
            try:
                self.log.flush(stream)
            except OSError as exc:
                _note(f"cannot write the log: {exc}")
        if fd == self.master:
            self._update_master()  # the master stays open for resize and input until the end
        else:
            self._unwatch(fd)
            os.close(fd)

    def _write_stdin(self, data: bytes) -> None:
        if self.stdin_fd is None or self.stdin_eof:
            return
        self.stdin_buf += data
        self._flush_stdin()

    def _flush_stdin(self) -> None:
        fd = self.stdin_fd
        if fd is None:
            return
        while self.stdin_buf:
            try:
                written = os.write(fd, self.stdin_buf)
            except BlockingIOError:
                break
            except OSError:  # the container closed its stdin (EPIPE) or the pty is gone (EIO)
                self.stdin_buf.clear()
                self.stdin_eof = True
                break
            del self.stdin_buf[:written]
        if not self.stdin_buf and self.stdin_eof:
            self._close_stdin_now()
            return
        if fd == self.master:
            self._update_master()
        elif self.stdin_buf:
            self._watch(fd, select.EPOLLOUT, lambda _m: self._flush_stdin())
        else:
            self._unwatch(fd)
        self._update_stdin_clients()

    def _end_stdin(self) -> None:
        """An attached client's input ended with --stdin-once: close the container's stdin once what
        is buffered is written (with a tty, send the terminal's EOF character instead)."""
        if self.stdin_fd is None or self.stdin_eof:
            return
        if self.stdin_fd == self.master:
            self.stdin_buf += b"\x04"
        self.stdin_eof = True
        self._flush_stdin()

    def _close_stdin_now(self) -> None:
        fd, self.stdin_fd = self.stdin_fd, None
        if fd is None:
            return
        if fd == self.master:
            self._update_master()
        else:
            self._unwatch(fd)
            os.close(fd)
        self._update_stdin_clients()

    def _update_stdin_clients(self) -> None:
        for client in self.clients.values():
            if client.op == "attach":
                self._update_client(client)

    # -- control socket ------------------------------------------------------------------------

    def _on_accept(self, _mask: int) -> None:
        if self.listener is None:
            return
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                _note(f"accept: {exc}")
                return
            sock.setblocking(False)
            client = _Client(sock)
            self.clients[client.fd] = client
            self._watch(client.fd, select.EPOLLIN, self._client_handler(client))

    def _client_handler(self, client: _Client) -> Callable[[int], None]:
        return lambda mask: self._on_client(client, mask)

    def _update_client(self, client: _Client) -> None:
        if client.fd not in self.clients:
            return
        reading = client.reading and not (
            client.op == "attach" and client.stdin and len(self.stdin_buf) >= STDIN_BUFFER_LIMIT)
        mask = (select.EPOLLIN if reading else 0) | (select.EPOLLOUT if client.outbuf else 0)
        self._watch(client.fd, mask)

    def _drop(self, client: _Client) -> None:
        if self.clients.pop(client.fd, None) is None:
            return
        self._unwatch(client.fd)
        client.sock.close()
        if client in self.start_waiters:
            self.start_waiters.remove(client)
        self._check_done()

    def _send(self, client: _Client, data: bytes) -> None:
        if client.fd not in self.clients:
            return
        client.outbuf += data
        if len(client.outbuf) > CLIENT_BUFFER_LIMIT:
            _note(f"dropping an attached client {len(client.outbuf)} bytes behind")
            self._drop(client)
            return
        self._flush_client(client)

    def _reply(self, client: _Client, doc: dict[str, object], *, close: bool = True) -> None:
        if close:
            client.closing = True
            client.reading = False
        self._send(client, json.dumps(doc).encode() + b"\n")

    def _error(self, client: _Client, message: str, kind: str) -> None:
        self._reply(client, {"ok": False, "error": message, "kind": kind})

    def _flush_client(self, client: _Client) -> None:
        while client.outbuf:
            try:
                sent = client.sock.send(client.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(client)
                return
            del client.outbuf[:sent]
        if not client.outbuf and client.closing:
            self._drop(client)
            return
        self._update_client(client)

    def _on_client(self, client: _Client, mask: int) -> None:
        if mask & select.EPOLLOUT:
            self._flush_client(client)
            if client.fd not in self.clients:
                return
        if mask & select.EPOLLIN or (mask & _ERR and client.reading):
            try:
                data = client.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._drop(client)
                return
            if not data:
                self._client_eof(client)
            elif client.op:
                self._client_input(client, data)
            else:
                self._request_data(client, data)
        elif mask & select.EPOLLHUP or mask & select.EPOLLERR:
            self._drop(client)  # gone altogether (not just done sending)

    def _client_eof(self, client: _Client) -> None:
        """The client is done sending (a half-close, or gone: then a hang-up follows and drops it)."""
        client.reading = False
        if not client.op:
            self._drop(client)  # no complete request
            return
        if client.op == "attach" and client.stdin and self.cfg.stdin_once:
            self._end_stdin()
        self._update_client(client)

    def _client_input(self, client: _Client, data: bytes) -> None:
        if client.op == "attach" and client.stdin:
            self._write_stdin(data)
        # any other input after a request is ignored

    def _request_data(self, client: _Client, data: bytes) -> None:
        client.inbuf += data
        end = client.inbuf.find(b"\n")
        if end < 0:
            if len(client.inbuf) > MAX_REQUEST:
                self._error(client, "request line too long", "invalid")
            return
        line, rest = bytes(client.inbuf[:end]), bytes(client.inbuf[end + 1:])
        client.inbuf.clear()
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                raise ValueError("not an object with an op")
        except ValueError as exc:
            client.op = "invalid"
            self._error(client, f"malformed request: {exc}", "invalid")
            return
        client.op = op = request["op"]
        if op == "status":
            self._reply(client, {"ok": True, "status": self._status()})
        elif op == "start":
            self._op_start(client)
        elif op == "wait":
            client.reading = False
            if self.deleted:
                self._reply(client, {"ok": True, "status": self._status()})
            else:
                self._update_client(client)  # answered on exit; a hang-up drops it
        elif op == "resize":
            self._op_resize(client, request)
        elif op == "attach":
            self._op_attach(client, request, rest)
        else:
            self._error(client, f"unknown op {op!r}", "invalid")

    def _op_start(self, client: _Client) -> None:
        client.reading = False
        if self.start_job is not None:
            self.start_waiters.append(client)
            self._update_client(client)
            return
        if self.state != CREATED or self.init_status is not None:
            state = EXITED if self.init_status is not None else self.state
            self._error(client, f"cannot start a container that is {state}", "conflict")
            return
        self.start_waiters.append(client)
        self._update_client(client)
        offset = self._runtime_log_size()
        begun = _now()
        self.start_job = self._job(["start", self.cfg.container_id],
                                   lambda code, _o, err: self._started(code, err, offset, begun))

    def _started(self, code: int, stderr: bytes, offset: int, begun: str) -> None:
        self.start_job = None
        waiters, self.start_waiters = self.start_waiters, []
        if code == 0:
            self.started_at = begun
            if self.state == CREATED:
                self.state = RUNNING
                self._write_status()
            for client in waiters:
                self._reply(client, {"ok": True, "status": self._status()})
        else:
            message = _runtime_error(self.runtime_log, offset, stderr,
                                     f"{self.cfg.runtime} start exited with code {code}")
            _note(f"start failed: {message}")
            for client in waiters:
                self._error(client, message, "unavailable")
        self._maybe_finish()

    def _op_resize(self, client: _Client, request: dict[str, object]) -> None:
        rows, cols = request.get("rows"), request.get("cols")
        if not isinstance(rows, int) or not isinstance(cols, int) or not (0 <= rows < 65536 and 0 <= cols < 65536):
            self._error(client, "resize needs integer rows and cols (0-65535)", "invalid")
            return
        if self.master is None:
            self._error(client, "the container has no terminal", "conflict")
            return
        try:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        except OSError as exc:
            self._error(client, f"resize: {exc.strerror}", "conflict")
            return
        self._reply(client, {"ok": True})

    def _op_attach(self, client: _Client, request: dict[str, object], rest: bytes) -> None:
        if self.state == EXITED or self.finishing:
            self._error(client, "cannot attach to a container that has exited", "conflict")
            return
        client.stdin = bool(request.get("stdin")) and self.cfg.stdin
        client.stdout = bool(request.get("stdout", True))
        client.stderr = bool(request.get("stderr", True))
        client.reading = True
        self._reply(client, {"ok": True, "tty": self.cfg.tty, "stdin": client.stdin}, close=False)
        if rest:
            self._client_input(client, rest)

    # -- exit ------------------------------------------------------------------------------------

    def _status(self) -> dict[str, object]:
        return {"state": self.state if self.state != CREATING else CREATED, "pid": self.init_pid,
                "exit_code": self.exit_code, "oom_killed": self.oom_killed, "started_at": self.started_at,
                "finished_at": self.finished_at}

    def _write_status(self) -> None:
        doc = self._status()
        doc.update(id=self.cfg.container_id, tty=self.cfg.tty, stdin=self.cfg.stdin, monitor_pid=os.getpid(),
                   monitor_start=self.monitor_start, version=PROTOCOL_VERSION)
        try:
            write_json_atomic(os.path.join(self.dir, STATUS_NAME), doc)
        except OSError as exc:
            _note(f"cannot write {STATUS_NAME}: {exc}")

    def _init_exited(self, status: int) -> None:
        self.init_status = status
        self.exit_code = exit_code_of(status)
        self.finished_at = _now()
        self.output_deadline = time.monotonic() + OUTPUT_DRAIN_SECONDS
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.finishing or self.init_status is None or self.start_job is not None:
            return
        if self.outputs and self.output_deadline is not None:
            return  # the rest of the output first (until end of file or the drain deadline)
        self.finishing = True
        self.output_deadline = None
        self._drain_outputs()
        for fd in list(self.outputs):
            self._close_output(fd)
        if self.oom_files:
            self.oom_killed = any((read_oom_kills(p) or 0) > before for p, before in self.oom_files.items())
            self._record_exit()
        else:
            self._job(["events", "--stats", self.cfg.container_id],
                      lambda code, out, _e: self._oom_from_stats(code, out), capture_stdout=True)

    def _oom_from_stats(self, code: int, out: bytes) -> None:
        if code == 0:
            try:
                doc = json.loads(out.splitlines()[0]) if out.strip() else {}
                self.oom_killed = int(doc["data"]["memory"].get("oom_kill") or 0) > 0
            except (ValueError, KeyError, TypeError, AttributeError, IndexError):
                pass
        self._record_exit()

    def _record_exit(self) -> None:
        try:
            write_json_atomic(os.path.join(self.dir, EXIT_NAME),
                              {"exit_code": self.exit_code, "oom_killed": self.oom_killed,
                               "finished_at": self.finished_at}, durable=True)
        except OSError as exc:
            _note(f"cannot write {EXIT_NAME}: {exc}")
        if self.log is not None:
            try:
                self.log.close()
            except OSError as exc:
                _note(f"cannot write the log: {exc}")
        self._close_stdin_now()
        self.state = EXITED
        self._write_status()
        self._job(["delete", self.cfg.container_id], self._deleted)

    def _deleted(self, code: int, _out: bytes, err: bytes) -> None:
        self.deleted = True
        if code != 0:
            _note(f"{self.cfg.runtime} delete {self.cfg.container_id} exited {code}: "
                  f"{_runtime_error(self.runtime_log, 0, err, '')}")
        if self.listener is not None:
            self._unwatch(self.listener.fileno())
            self.listener.close()
            self.listener = None
            try:
                os.unlink(os.path.join(self.dir, SOCKET_NAME))
            except FileNotFoundError:
                pass
        if self.master is not None:
            self._unwatch(self.master)
            os.close(self.master)
            self.master = None
        status = self._status()
        for client in list(self.clients.values()):
            if client.op == "wait":
                self._reply(client, {"ok": True, "status": status})
            elif client.op in ("attach", ""):
                client.closing = True
                client.reading = False
                self._flush_client(client)
        self.exit_deadline = time.monotonic() + CLIENT_FLUSH_SECONDS
        self._check_done()

    def _check_done(self) -> None:
        if self.exit_deadline is not None and not self.clients and not self.children:
            self.done = True


# ---------------------------------------------------------------------------------------------------
# entry points


def daemonize(state_dir: str) -> None:
    """Detach from the caller: fork, setsid, fork (the caller's child exits at once); stdin and stdout
    on /dev/null, stderr appended to ``state_dir/monitor.log``."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    log = os.open(os.path.join(state_dir, MONITOR_LOG_NAME), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(log, 2)
    for fd in (null, log):
        if fd > 2:
            os.close(fd)


def run_monitor(config: MonitorConfig, ready_fd: int | None = None) -> int:
    """Run a monitor for ``config`` in this process (no daemonizing) until the container has exited.
    Returns 0, or 1 if the container could not be created (the error went to ``ready_fd``).

    It takes the process over while it runs: main thread only (it installs signal handlers), the
    working directory becomes the state directory, and the process becomes a child subreaper (left so:
    the container's init is its child). Errors go to stderr."""
    return Monitor(config, ready_fd).run()


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring). Returns the process exit code (2: usage)."""
    try:
        config, ready_fd, foreground = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"monitor: {exc}\n{_USAGE}", file=sys.stderr)
        return 2
    if ready_fd is not None and ready_fd <= 2:  # given as stdio (by the fork server): keep it past daemonize
        ready_fd = os.dup(ready_fd)
    if not foreground:
        daemonize(config.state_dir)
    try:
        return run_monitor(config, ready_fd)
    except Exception as exc:  # the last word goes to monitor.log
        _note(f"fatal: {exc!r}")
        raise


if __name__ == "__main__":
    sys.exit(main())
