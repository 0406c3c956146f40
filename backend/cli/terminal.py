"""The local terminal and stdio around a hijacked stream: raw mode, size and SIGWINCH, stdin relay.

:func:`relay` is what ``run``, ``start -a``, ``attach`` and ``exec`` share: the engine's output goes to
stdout/stderr as it comes, stdin (when attached) goes to the engine and its EOF half-closes the stream;
it returns when the engine closes the stream (the process ended).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import sys
import termios
import threading
import tty
from collections.abc import Awaitable, Callable, Iterator
from typing import BinaryIO

from backend.api.hijack import STDERR, HijackedConnection

Resize = Callable[[int, int], Awaitable[None]]


@contextlib.contextmanager
def raw_terminal(fd: int, enabled: bool = True) -> Iterator[None]:
    """Put the terminal on ``fd`` in raw mode inside the block and restore it on the way out (also
    on errors). Does nothing when ``fd`` is not a terminal or ``enabled`` is false."""
    if not enabled or not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_size(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of the terminal on ``fd``, or None when it is not one."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return (rows, cols) if rows and cols else None


@contextlib.contextmanager
def follow_size(fd: int, resize: Resize) -> Iterator[None]:
    """Send the terminal's size now and on every SIGWINCH inside the block (engine errors ignored)."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def send() -> None:
        size = terminal_size(fd)
        if size is not None:
            with contextlib.suppress(Exception):
                await resize(*size)

    def schedule() -> None:
        task = loop.create_task(send())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    schedule()
    loop.add_signal_handler(signal.SIGWINCH, schedule)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGWINCH)


def _stdin_reader(fd: int, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes]) -> None:
    """Read ``fd`` in a daemon thread (works for terminals, pipes and files alike); b"" marks EOF."""
    while True:
        try:
            data = os.read(fd, 1 << 16)
        except OSError:
            data = b""
        try:
            loop.call_soon_threadsafe(queue.put_nowait, data)
        except RuntimeError:  # the loop is closed: the command is over
            return
        if not data:
            return


async def _pump_stdin(conn: HijackedConnection, fd: int) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    threading.Thread(target=_stdin_reader, args=(fd, loop, queue), daemon=True, name="stdin").start()
    try:
        while data := await queue.get():
            await conn.write(data)
    except ConnectionError:
        return
    await conn.close_write()


async def relay(conn: HijackedConnection, *, tty: bool, stdin: bool, stdout: BinaryIO | None = None,
                stderr: BinaryIO | None = None) -> None:
    """Copy the stream both ways until the engine closes it (see the module docstring)."""
    out = stdout or sys.stdout.buffer
    err = stderr or sys.stderr.buffer
    feeder = asyncio.ensure_future(_pump_stdin(conn, sys.stdin.fileno())) if stdin else None
    if feeder is None:
        await conn.close_write()
    try:
        async for stream, data in conn.output(tty):
            target = err if stream == STDERR else out
            target.write(data)
            target.flush()
    finally:
        if feeder is not None:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await feeder
        conn.close()
