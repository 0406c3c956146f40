"""The engine's handle on a container's monitor (``monitor.py``): spawn it, find it again after berthd
restarts, and talk to it over its unix socket with asyncio.

A handle holds no connection: every call opens one (the protocol is one request per connection), so a
handle can be dropped and rebuilt with :meth:`MonitorHandle.connect` at any time without the container
noticing. When the monitor is gone, ``status()`` and ``wait()`` answer from ``exit.json``, which the
monitor writes before it exits; a monitor gone without that file (killed) raises Unavailable.

Errors are the engine's (``backend.engine.errors``): Conflict for a request in the wrong state (start
twice, attach after exit, resize without a tty), InvalidParameter for bad arguments, Unavailable when the
runtime fails (with the runtime's own message) or the monitor cannot be reached, NotFound when no
monitor ever ran in a state directory.
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backend.engine.errors import Conflict, EngineError, InvalidParameter, NotFound, Unavailable
from backend.engine.runtime.monitor import (
    CONTAINER_PID_NAME,
    EXIT_NAME,
    LOG_NAME,
    MONITOR_COMM,
    MONITOR_LOG_NAME,
    MONITOR_PID_NAME,
    SOCKET_NAME,
    STATUS_NAME,
    MonitorConfig,
    UsageError,
    process_start_ticks,
)
from backend.frozen import helper_argv

if TYPE_CHECKING:
    from backend.engine.runtime.forkserver_client import ForkServer

__all__ = ["ExitStatus", "MonitorGone", "MonitorHandle", "MonitorState", "MonitorStatus", "read_output"]

_MAX_SUN_PATH = 100


class MonitorState(enum.Enum):
    """The container as its monitor sees it. created -> running -> exited (or created -> exited)."""

    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"


@dataclass(frozen=True)
class MonitorStatus:
    """The monitor's status document. Times are RFC 3339 strings (UTC, nanoseconds)."""

    state: MonitorState
    pid: int
    exit_code: int | None
    oom_killed: bool
    started_at: str | None
    finished_at: str | None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> MonitorStatus:
        """Raises ValueError / KeyError / TypeError for a malformed document."""
        code = doc.get("exit_code")
        return cls(state=MonitorState(doc["state"]), pid=int(doc.get("pid") or 0),
                   exit_code=None if code is None else int(code), oom_killed=bool(doc.get("oom_killed")),
                   started_at=doc.get("started_at"), finished_at=doc.get("finished_at"))


@dataclass(frozen=True)
class ExitStatus:
    """What ``exit.json`` records: the init's exit code (128 + signal if killed), whether the OOM killer
    struck the container's cgroup, and when the exit was seen."""

    exit_code: int
    oom_killed: bool
    finished_at: str


class MonitorGone(Unavailable):
    """The monitor's socket does not answer (the monitor has exited or was killed)."""


_KINDS: dict[str, type[EngineError]] = {"conflict": Conflict, "invalid": InvalidParameter,
                                        "unavailable": Unavailable, "not_found": NotFound}


def _error(reply: dict[str, Any]) -> EngineError:
    kind = _KINDS.get(str(reply.get("kind")), Unavailable)
    return kind(str(reply.get("error") or "the monitor refused the request"))


def _read_json(path: str) -> dict[str, Any] | None:
    """The JSON object in ``path``; None if missing or not a complete object."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        return None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _project_root() -> str:
    import backend

    return os.path.dirname(os.path.abspath(next(iter(backend.__path__))))


def _tail(path: str, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


class MonitorHandle:
    """The engine's side of one container's monitor, identified by its state directory."""

    def __init__(self, state_dir: str, container_id: str, *, pid: int, tty: bool, monitor_pid: int,
                 monitor_start: int | None = None) -> None:
        self.state_dir = os.path.abspath(state_dir)
        self.container_id = container_id
        self.pid = pid
        self.tty = tty
        self.monitor_pid = monitor_pid
        self.monitor_start = monitor_start

    def __repr__(self) -> str:
        return f"MonitorHandle({self.container_id!r}, pid={self.pid}, monitor_pid={self.monitor_pid})"

    @property
    def socket_path(self) -> str:
        return os.path.join(self.state_dir, SOCKET_NAME)

    @property
    def log_path(self) -> str:
        """The container's json-file log (rotated files next to it: ``.1``, ``.2``...)."""
        return os.path.join(self.state_dir, LOG_NAME)

    # -- life cycle ------------------------------------------------------------------------------

    @classmethod
    def spawn(cls, state_dir: str, container_id: str, bundle: str, runtime: str, *,
              runtime_root: str | None = None, tty: bool = False, stdin: bool = False,
              stdin_once: bool = False, log_max_size: int = 0, log_max_files: int = 1,
              python: str = sys.executable, timeout: float = 60.0,
              fork_server: ForkServer | None = None) -> MonitorHandle:
        """Start a daemonized monitor that creates the container; return once it is created.

        With ``fork_server`` (only for berth-runtime as the runtime) the monitor is forked from that warm
        process and runs the runtime's verbs in-process (``--runtime-inproc``): no interpreter start-up
        on the way. Otherwise it is a new ``python -S`` process.

        Blocks (up to ``timeout`` seconds) while the runtime creates the container; call it through
        ``asyncio.to_thread`` from async code. Raises Conflict if a live monitor already owns
        ``state_dir``, InvalidParameter for bad arguments, and Unavailable with the runtime's error
        message when creation fails (the monitor then exits and leaves no container behind) or with
        the monitor's own log when it died; on timeout the monitor is killed and Unavailable raised.
        """
        state_dir = os.path.abspath(state_dir)
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        existing = cls._load(state_dir)
        if existing is not None and existing.alive():
            raise Conflict(f"a monitor (pid {existing.monitor_pid}) already runs in {state_dir}")
        try:
            config = MonitorConfig(state_dir, container_id, bundle, runtime, runtime_root=runtime_root, tty=tty,
                                   stdin=stdin, stdin_once=stdin_once, log_max_size=log_max_size,
                                   log_max_files=log_max_files, inproc=fork_server is not None)
        except UsageError as exc:
            raise InvalidParameter(str(exc)) from exc
        ready_r, ready_w = os.pipe()
        deadline = time.monotonic() + timeout
        try:
            if fork_server is not None:
                code = cls._fork_monitor(fork_server, config, state_dir, ready_w)
                report = cls._read_report(ready_r, deadline)
            else:
                code, report = cls._exec_monitor(python, config, state_dir, ready_w, ready_r, timeout, deadline)
        finally:
            os.close(ready_r)
        log_path = os.path.join(state_dir, MONITOR_LOG_NAME)
        if code == 2:
            raise InvalidParameter(f"monitor: {_tail(log_path)}")
        if not report:
            cls._kill_stray(state_dir)
            if time.monotonic() >= deadline:
                raise Unavailable(f"container {container_id} was not created within {timeout} s")
            raise Unavailable(f"the monitor of {container_id} exited without a report: {_tail(log_path)}")
        try:
            reply = json.loads(report.splitlines()[0])
        except ValueError as exc:
            raise Unavailable(f"the monitor of {container_id} sent a malformed report {report!r}") from exc
        if not reply.get("ok"):
            raise _error(reply)
        handle = cls._load(state_dir)
        if handle is None:
            raise Unavailable(f"the monitor of {container_id} wrote no {STATUS_NAME}")
        return handle

    @staticmethod
    def _fork_monitor(fork_server: ForkServer, config: MonitorConfig, state_dir: str, ready_w: int) -> int:
        """The monitor as a child of the fork server, its report on ``ready_w`` (given as its stdout; closed
        here)."""
        try:
            with open(os.path.join(state_dir, MONITOR_LOG_NAME), "ab") as log, open(os.devnull, "rb") as null:
                return fork_server.run(["monitor", *config.argv(), "--ready-fd", "1"], stdin=null.fileno(),
                                       stdout=ready_w, stderr=log.fileno())
        finally:
            os.close(ready_w)

    @classmethod
    def _exec_monitor(cls, python: str, config: MonitorConfig, state_dir: str, ready_w: int, ready_r: int,
                      timeout: float, deadline: float) -> tuple[int, bytes]:
        """The monitor as a new ``python -S`` process; closes ``ready_w``. Returns (exit code, report)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_project_root(), env.get("PYTHONPATH")) if p)
        try:
            argv = [*helper_argv("monitor", python), *config.argv(), "--ready-fd", str(ready_w)]
            with open(os.path.join(state_dir, MONITOR_LOG_NAME), "ab") as log:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                        pass_fds=(ready_w,), env=env, cwd="/")
        except OSError as exc:
            raise Unavailable(f"cannot start the monitor ({python}): {exc.strerror}") from exc
        finally:
            os.close(ready_w)
        try:
            code = proc.wait(timeout)  # the first process exits as soon as the daemon is forked
            return code, cls._read_report(ready_r, deadline)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return -1, b""

    @staticmethod
    def _read_report(fd: int, deadline: float) -> bytes:
        """Read the ready pipe to end of file (the monitor closes it after its one report)."""
        data = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return b""
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                return data
            data += chunk

    @staticmethod
    def _kill_stray(state_dir: str) -> None:
        """SIGKILL a monitor that did not report (by the pid it recorded, if it is still that process)."""
        try:
            with open(os.path.join(state_dir, MONITOR_PID_NAME)) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{pid}/comm", "rb") as f:
                comm = f.read().strip()
        except OSError:
            return
        if comm == MONITOR_COMM or (b"backend.engine.runtime.monitor" in cmdline and state_dir.encode() in cmdline):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    @classmethod
    def _load(cls, state_dir: str) -> MonitorHandle | None:
        doc = _read_json(os.path.join(state_dir, STATUS_NAME))
        if doc is None:
            return None
        try:
            return cls(state_dir, str(doc["id"]), pid=int(doc.get("pid") or 0), tty=bool(doc.get("tty")),
                       monitor_pid=int(doc["monitor_pid"]),
                       monitor_start=None if doc.get("monitor_start") is None else int(doc["monitor_start"]))
        except (KeyError, TypeError, ValueError):
            return None

    @classmethod
    def connect(cls, state_dir: str) -> MonitorHandle:
        """The handle for the monitor that ran (or runs) in ``state_dir``, as berthd does on start.

        Works whether the monitor is alive or has exited (then ``exit_status()`` has the result).
        Raises NotFound when no monitor ever got a container created there.
        """
        handle = cls._load(os.path.abspath(state_dir))
        if handle is None:
            raise NotFound(f"no container monitor state in {state_dir}")
        if not handle.pid:
            try:
                with open(os.path.join(handle.state_dir, CONTAINER_PID_NAME)) as f:
                    handle.pid = int(f.read().strip())
            except (OSError, ValueError):
                pass
        return handle

    def alive(self) -> bool:
        """Whether the monitor process still runs (its pid, checked against its start time)."""
        ticks = process_start_ticks(self.monitor_pid)
        return ticks is not None and (self.monitor_start is None or ticks == self.monitor_start)

    def exit_status(self) -> ExitStatus | None:
        """The recorded exit (``exit.json``), or None while the container has not exited (or the monitor
        died without recording it)."""
        doc = _read_json(os.path.join(self.state_dir, EXIT_NAME))
        if doc is None:
            return None
        try:
            return ExitStatus(exit_code=int(doc["exit_code"]), oom_killed=bool(doc.get("oom_killed")),
                              finished_at=str(doc.get("finished_at") or ""))
        except (KeyError, TypeError, ValueError):
            return None

    # -- requests --------------------------------------------------------------------------------

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        path = self.socket_path
        try:
            if len(path) < _MAX_SUN_PATH:
                return await asyncio.open_unix_connection(path)
            # sun_path holds 108 bytes: reach a deep socket through a descriptor of its directory
            dirfd = os.open(self.state_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                return await asyncio.open_unix_connection(f"/proc/self/fd/{dirfd}/{SOCKET_NAME}")
            finally:
                os.close(dirfd)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise MonitorGone(f"the monitor of container {self.container_id} is not running") from exc
        except OSError as exc:
            raise Unavailable(f"cannot reach the monitor of {self.container_id}: {exc.strerror}") from exc

    async def _request(self, doc: dict[str, Any]) -> tuple[dict[str, Any], asyncio.StreamReader,
                                                           asyncio.StreamWriter]:
        """Send one request; return the (successful) reply and the still-open connection."""
        reader, writer = await self._open()
        try:
            writer.write(json.dumps(doc).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
            if not line:
                raise MonitorGone(f"the monitor of {self.container_id} closed the connection")
            reply = json.loads(line)
            if not isinstance(reply, dict):
                raise ValueError(f"not an object: {line!r}")
        except BaseException as exc:
            writer.close()
            if isinstance(exc, ValueError):
                raise Unavailable(f"the monitor of {self.container_id} answered {exc}") from exc
            if isinstance(exc, (ConnectionError, asyncio.IncompleteReadError)):
                raise MonitorGone(f"the monitor of {self.container_id} went away") from exc
            raise
        if not reply.get("ok"):
            writer.close()
            raise _error(reply)
        return reply, reader, writer

    async def _simple(self, doc: dict[str, Any]) -> dict[str, Any]:
        reply, _reader, writer = await self._request(doc)
        writer.close()
        return reply

    def _recorded_status(self) -> MonitorStatus:
        """The status from the files the monitor left (after it is gone). Raises Unavailable."""
        record = self.exit_status()
        if record is None:
            raise Unavailable(f"the monitor of container {self.container_id} is gone and recorded no exit")
        doc = _read_json(os.path.join(self.state_dir, STATUS_NAME)) or {}
        return MonitorStatus(state=MonitorState.EXITED, pid=self.pid, exit_code=record.exit_code,
                             oom_killed=record.oom_killed, started_at=doc.get("started_at"),
                             finished_at=record.finished_at)

    @staticmethod
    def _status_of(reply: dict[str, Any]) -> MonitorStatus:
        try:
            return MonitorStatus.from_doc(reply["status"])
        except (KeyError, TypeError, ValueError) as exc:
            raise Unavailable(f"malformed status from the monitor: {reply!r}") from exc

    async def status(self) -> MonitorStatus:
        """The container's status (from exit.json once the monitor is gone). Raises Unavailable."""
        try:
            return self._status_of(await self._simple({"op": "status"}))
        except MonitorGone:
            return self._recorded_status()

    async def start(self) -> MonitorStatus:
        """Start the created container (``runtime start``). Raises Conflict unless it is created,
        Unavailable with the runtime's message if the runtime fails."""
        try:
            return self._status_of(await self._simple({"op": "start"}))
        except MonitorGone:
            if self.exit_status() is not None:
                raise Conflict(f"container {self.container_id} has exited") from None
            raise

    async def wait(self) -> MonitorStatus:
        """Block until the container has exited and its monitor has recorded it, its log is closed and
        the runtime has deleted it; return the final status."""
        try:
            return self._status_of(await self._simple({"op": "wait"}))
        except MonitorGone:
            return self._recorded_status()

    async def resize(self, height: int, width: int) -> None:
        """Set the container's terminal size (rows, columns). Raises Conflict without a tty."""
        if not (0 <= height < 65536 and 0 <= width < 65536):
            raise InvalidParameter(f"invalid terminal size {height}x{width}")
        await self._simple({"op": "resize", "rows": height, "cols": width})

    async def attach(self, stdin: bool = False, *, stdout: bool = True,
                     stderr: bool = True) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Attach to the container's streams from now on.

        The reader yields the output: raw bytes with a tty, else Docker's multiplexed frames (see
        :func:`read_output`); it ends when the container has exited. With ``stdin`` what is written to
        the writer goes to the container's stdin; ``writer.write_eof()`` ends it (and closes the
        container's stdin if the monitor runs with stdin-once). Close the writer to detach.
        Raises Conflict if the container has exited.
        """
        try:
            reply, reader, writer = await self._request(
                {"op": "attach", "stdin": stdin, "stdout": stdout, "stderr": stderr})
        except MonitorGone:
            if self.exit_status() is not None:
                raise Conflict(f"cannot attach to container {self.container_id}: it has exited") from None
            raise
        self.tty = bool(reply.get("tty", self.tty))
        return reader, writer


async def read_output(reader: asyncio.StreamReader, tty: bool) -> AsyncIterator[tuple[str, bytes]]:
    """The output of an attach connection as ``(stream, data)``: with a tty all of it is "stdout";
    without, Docker's frames (8-byte header: stream 1/2, 3 zero bytes, big-endian 32-bit length) are
    split. Ends at end of stream. Raises Unavailable for a malformed frame."""
    if tty:
        while chunk := await reader.read(1 << 16):
            yield "stdout", chunk
        return
    names = {1: "stdout", 2: "stderr"}
    while True:
        try:
            header = await reader.readexactly(8)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise Unavailable("attach stream ended inside a frame header") from exc
            return
        stream, size = header[0], struct.unpack(">I", header[4:])[0]
        if stream not in names:
            raise Unavailable(f"attach stream: unknown stream {stream}")
        try:
            data = await reader.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            raise Unavailable("attach stream ended inside a frame") from exc
        yield names[stream], data
