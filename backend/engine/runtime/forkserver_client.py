"""Client side of the warm berth-runtime fork server (``forkserver``): start it, run commands in it, stop it.

``ForkServer.run(argv)`` behaves like running ``berth-runtime *argv`` with the given stdio, minus the
interpreter start-up. :class:`IdleForkServer` starts one on first use and stops it after a while
unused. This module imports only the standard library, so the engine pays nothing for it until used.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import tempfile
import threading
import time
from types import TracebackType

from backend.engine.errors import Unavailable
from backend.frozen import helper_argv


class ForkServer:
    """Client handle of a running fork server (which it started and will stop)."""

    def __init__(self, proc: subprocess.Popen[bytes], path: str, tmpdir: str | None) -> None:
        self._proc = proc
        self.path = path
        self._tmpdir = tmpdir

    @classmethod
    def start(cls, root: str | None = None) -> ForkServer:
        """Start a server whose socket lives in ``root`` (a fresh temp dir when None).

        Raises Unavailable if it does not come up, or at once if the socket's path does not fit a unix
        socket address (108 bytes).
        """
        tmpdir = None
        if root is None:
            root = tmpdir = tempfile.mkdtemp(prefix="berth-forkserver-")
        path = os.path.join(root, "forkserver.sock")
        if len(os.fsencode(path)) >= 108:
            raise Unavailable(f"the fork server's socket path is too long for a unix socket ({path}): "
                              "use a shorter --exec-root")
        os.makedirs(root, mode=0o700, exist_ok=True)
        read_fd, write_fd = os.pipe()
        proc = subprocess.Popen(
            [*helper_argv("forkserver"), "--socket", path,
             "--ready-fd", str(write_fd)],
            pass_fds=(write_fd,), stdin=subprocess.DEVNULL,
        )
        os.close(write_fd)
        try:
            ready, _, _ = select.select([read_fd], [], [], 30)
            if not ready or os.read(read_fd, 1) != b"1":
                proc.kill()
                proc.wait()
                raise Unavailable("berth-runtime fork server did not start")
        finally:
            os.close(read_fd)
        return cls(proc, path, tmpdir)

    def run(self, argv: list[str], *, stdin: int = 0, stdout: int = 1, stderr: int = 2) -> int:
        """Run ``berth-runtime *argv`` (or a monitor, see :func:`run_command`) in the server with these
        descriptors; return its exit code.

        Raises Unavailable if the server is gone.
        """
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            try:
                conn.connect(self.path)
                socket.send_fds(conn, [json.dumps({"argv": argv}).encode()], [stdin, stdout, stderr])
                # Read up to the newline, not to EOF: a container started by the command may
                # still hold the connection open.
                reply = b""
                while not reply.endswith(b"\n") and (chunk := conn.recv(4096)):
                    reply += chunk
            except OSError as exc:
                raise Unavailable(f"berth-runtime fork server: {exc.strerror or exc}") from exc
        try:
            return int(json.loads(reply)["exit"])
        except (ValueError, KeyError, TypeError) as exc:
            raise Unavailable("berth-runtime fork server: the command died without an exit code") from exc

    def exited(self) -> bool:
        return self._proc.poll() is not None

    def close(self) -> None:
        """Stop the server and wait for it."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._tmpdir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self._tmpdir)

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class IdleForkServer:
    """A :class:`ForkServer` started on first use and stopped once unused for ``idle_timeout`` seconds,
    so an engine without containers keeps no warm process. Thread-safe."""

    def __init__(self, root: str, idle_timeout: float = 300.0) -> None:
        self.root = root
        self.idle_timeout = idle_timeout
        self._server: ForkServer | None = None
        self._last_use = 0.0
        self._lock = threading.Lock()

    def get(self) -> ForkServer:
        """The running server, started if needed. Raises Unavailable if it cannot start."""
        with self._lock:
            self._last_use = time.monotonic()
            if self._server is None or self._server.exited():
                self._server = ForkServer.start(self.root)
            return self._server

    def stop_if_idle(self) -> None:
        """Stop the server if it was not used for ``idle_timeout`` seconds."""
        with self._lock:
            if self._server is None or time.monotonic() - self._last_use < self.idle_timeout:
                return
            server, self._server = self._server, None
        server.close()

    def close(self) -> None:
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.close()
