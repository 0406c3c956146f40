"""A warm berth-runtime: one Python process with the runtime imported, forking per command.

Starting Python and importing the runtime costs far more than the container work itself, so the
engine keeps one server and sends it CLI commands: ``ForkServer.run(argv)`` behaves exactly like
running ``berth-runtime *argv`` with the given stdio, minus the start-up. Each request is served in
its own forked child, so a crash in one command cannot take the server down, and concurrent
commands do not block each other.

The client side (start, run, stop; and one started on demand that stops when idle) is in
``forkserver_client`` so the engine can use it without importing the runtime.

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
import sys

from backend.engine.runtime import cli, monitor
from backend.engine.runtime import syscalls as sc
from backend.engine.runtime.capabilities import last_cap
from backend.engine.runtime.seccomp import parse_seccomp

_MAX_REQUEST = 1 << 20


def run_command(argv: list[str]) -> int:
    """Run one command in this (forked, single-use) process with fds 0-2 as its stdio; return its exit code.
    ``argv`` is ``berth-runtime``'s arguments, or ``["monitor", ...]`` for a container monitor
    (``backend.engine.runtime.monitor``'s arguments; it daemonizes, so this returns as soon as it has)."""
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process ends after this command
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    try:
        if argv[:1] == ["monitor"]:
            if os.fork():  # the answer comes from here; the child goes on to daemonize as the monitor
                return 0
            os._exit(monitor.main(argv[1:]))
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()


def _serve_one(conn: socket.socket) -> None:
    """In a forked child: run one command with the client's stdio and report its exit code."""
    code = 1
    try:
        msg, fds, _, _ = socket.recv_fds(conn, _MAX_REQUEST, 3)
        if len(fds) != 3:
            raise ValueError("expected three descriptors (stdin, stdout, stderr)")
        argv = json.loads(msg)["argv"]
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError("argv must be a non-empty list of strings")
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        code = run_command(argv)
    except Exception as exc:
        with contextlib.suppress(OSError):
            os.write(2, f"berth-runtime: fork server: {exc}\n".encode())
    finally:
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({"exit": code}).encode() + b"\n")
        os._exit(code & 0xFF)


def serve(path: str, ready_fd: int | None = None) -> None:
    """Listen on ``path`` and serve requests until SIGTERM. Writes one byte to ``ready_fd`` when
    listening."""
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGTERM)  # ends with its starter (forked children are not affected)
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


def main(argv: list[str] | None = None) -> None:
    """``python -m backend.engine.runtime.forkserver --socket PATH [--ready-fd N]``."""
    parser = argparse.ArgumentParser(prog="berth-runtime-forkserver")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--ready-fd", type=int, default=None)
    args = parser.parse_args(argv)
    serve(args.socket, args.ready_fd)


if __name__ == "__main__":
    main()
