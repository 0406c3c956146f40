"""A warm berth-runtime: one Python process with the runtime imported, forking per command.

Starting Python and importing the runtime costs far more than the container work itself, so the
engine keeps one server and sends it CLI commands: ``ForkServer.run(argv)`` behaves exactly like
running ``berth-runtime *argv`` with the given stdio, minus the start-up. Each request is served in
its own forked child, so a crash in one command cannot take the server down, and concurrent
commands do not block each other.

Wire protocol (unix stream socket, one request per connection): the client sends a JSON object
``{"argv": [...]}`` with exactly three descriptors (stdin, stdout, stderr) in SCM_RIGHTS; the server
answers ``{"exit": N}`` and a newline when the command has finished.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
from types import TracebackType

from backend.engine.errors import Unavailable
from backend.engine.runtime import cli
from backend.engine.runtime import syscalls as sc
from backend.engine.runtime.capabilities import last_cap
from backend.engine.runtime.seccomp import parse_seccomp

_MAX_REQUEST = 1 << 20


def _serve_one(conn: socket.socket) -> None:
    """In a forked child: run one command with the client's stdio and report its exit code."""
    code = 1
    try:
        msg, fds, _, _ = socket.recv_fds(conn, _MAX_REQUEST, 3)
        if len(fds) != 3:
            raise ValueError("expected three descriptors (stdin, stdout, stderr)")
        argv = json.loads(msg)["argv"]
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise ValueError("argv must be a list of strings")
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process ends after this command
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    except Exception as exc:
        with contextlib.suppress(OSError):
            os.write(2, f"berth-runtime: fork server: {exc}\n".encode())
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({"exit": code}).encode() + b"\n")
        os._exit(code & 0xFF)


def serve(path: str, ready_fd: int | None = None) -> None:
    """Listen on ``path`` and serve requests until SIGTERM. Writes one byte to ``ready_fd`` when
    listening."""
    # Warm everything a command needs, so a forked handler starts with it loaded.
    sc.libc()
    last_cap()
    cli.warm()
    with contextlib.suppress(Exception):
        parse_seccomp({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                                                                        "action": "SCMP_ACT_ALLOW"}]})
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o600)
    server.listen(64)
    stop = False

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    gc.freeze()  # keep the warm heap shared with forked handlers instead of copied by the collector
    if ready_fd is not None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)
    while not stop:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        try:
            ready, _, _ = select.select([server], [], [], 0.5)
        except InterruptedError:
            continue
        if not ready:
            continue
        conn, _ = server.accept()
        if os.fork() == 0:
            server.close()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _serve_one(conn)
        conn.close()
    server.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class ForkServer:
    """Client handle of a running fork server (which it started and will stop)."""

    def __init__(self, proc: subprocess.Popen[bytes], path: str, tmpdir: str | None) -> None:
        self._proc = proc
        self.path = path
        self._tmpdir = tmpdir

    @classmethod
    def start(cls, root: str | None = None) -> ForkServer:
        """Start a server whose socket lives in ``root`` (a fresh temp dir when None).

        Raises Unavailable if it does not come up.
        """
        tmpdir = None
        if root is None:
            root = tmpdir = tempfile.mkdtemp(prefix="berth-forkserver-")
        os.makedirs(root, mode=0o700, exist_ok=True)
        path = os.path.join(root, "forkserver.sock")
        read_fd, write_fd = os.pipe()
        proc = subprocess.Popen(
            [sys.executable, "-m", "backend.engine.runtime.forkserver", "--socket", path,
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
        """Run ``berth-runtime *argv`` in the server with these descriptors; return its exit code.

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


def main(argv: list[str] | None = None) -> None:
    """``python -m backend.engine.runtime.forkserver --socket PATH [--ready-fd N]``."""
    parser = argparse.ArgumentParser(prog="berth-runtime-forkserver")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--ready-fd", type=int, default=None)
    args = parser.parse_args(argv)
    serve(args.socket, args.ready_fd)


if __name__ == "__main__":
    main()
