"""The Exec tab of a container's detail window: a shell in the running container, in a real terminal.

The first time the tab is shown it opens a session: the container must be running (else the tab says so);
the shell is ``/bin/bash`` if the container has it, else ``/bin/sh``; it runs as an exec with a tty, stdin and
``TERM=xterm-256color``. Output is pumped into the :class:`TerminalWidget`, keys go to the exec's stdin, and the
terminal's size follows the widget (``exec_resize``). When the shell ends the tab shows "Process exited (code N)"
and a Reconnect button that opens a new session. :meth:`ExecTab.stop` (the window closing) ends the session
and closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib

from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.formatting import describe_error
from app.widgets.terminal import TerminalWidget
from backend.api.client import EngineClient
from backend.api.errors import APIError, NotFoundError
from backend.api.hijack import HijackedConnection

SHELLS = ("/bin/bash", "/bin/sh")
FEED_SLICE = 4096  # bytes interpreted between two turns of the event loop (pyte takes about 10 ms for these)


class ExecTab(QWidget):
    """A shell in container ``container_id``; ``status`` says what the session is doing or how it ended."""

    def __init__(self, client: EngineClient, container_id: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._client, self._container_id = client, container_id
        self.terminal = TerminalWidget()
        self.status = QLabel()
        self.reconnect = QPushButton("Reconnect")
        self.reconnect.setToolTip("Open a new shell in the container")
        self.reconnect.clicked.connect(self.open_session)
        self.reconnect.hide()
        bar = QHBoxLayout()
        bar.addWidget(self.status, 1)
        bar.addWidget(self.reconnect)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.terminal, 1)
        self.terminal.send.connect(self._typed)
        self.terminal.resized.connect(self._resized)
        self._task: asyncio.Task[None] | None = None
        self._connection: HijackedConnection | None = None
        self._input: asyncio.Queue[bytes] | None = None
        self._size_changed: asyncio.Event | None = None

    def showEvent(self, event: QShowEvent) -> None:
        if self._task is None:  # the first time only; after that, Reconnect
            self.open_session()
        super().showEvent(event)

    def open_session(self) -> None:
        """End the current session (if any), clear the terminal and open a new shell."""
        self.stop()
        self.terminal.reset()
        self.reconnect.hide()
        self.status.setText("Connecting…")
        self._task = asyncio.ensure_future(self._session())

    def stop(self) -> None:
        """End the session: stop its tasks and close the connection (idempotent)."""
        if self._task is not None:
            self._task.cancel()
        if self._connection is not None:
            self._connection.close()

    async def _session(self) -> None:
        try:
            if not (await self._client.inspect_container(self._container_id)).running:
                self._ended("The container is not running: start it, then Reconnect.")
                return
            shell = await self._shell()
            exec_id = await self._client.exec_create(self._container_id, [shell], tty=True, stdin=True,
                                                     env=["TERM=xterm-256color"])
            self._connection = await self._client.exec_attach(exec_id, tty=True)
            self.status.setText(f"Connected: {shell}")
            self.terminal.setFocus()
            self._input, self._size_changed = asyncio.Queue(), asyncio.Event()
            self._size_changed.set()  # the exec starts at the engine's default size
            pumps = [asyncio.ensure_future(self._pump_input(self._connection, self._input)),
                     asyncio.ensure_future(self._pump_size(exec_id, self._size_changed))]
            try:
                async for _, data in self._connection.output(tty=True):
                    for start in range(0, len(data), FEED_SLICE):  # a flood of output must not freeze the window
                        self.terminal.feed(data[start:start + FEED_SLICE])
                        await asyncio.sleep(0)
            finally:
                for pump in pumps:
                    pump.cancel()
            code = await self._exit_code(exec_id)
            self._ended("Process exited" + (f" (code {code})" if code is not None else ""))
        except (APIError, OSError) as exc:
            self._ended(f"Could not open a shell: {describe_error(exc)}")
        finally:
            if self._task is asyncio.current_task():  # not replaced by a newer session meanwhile
                if self._connection is not None:
                    self._connection.close()
                self._connection = self._input = self._size_changed = None

    def _ended(self, message: str) -> None:
        self.status.setText(message)
        self.reconnect.show()

    async def _shell(self) -> str:
        """The first of :data:`SHELLS` the container has (the last one if none is found)."""
        for shell in SHELLS[:-1]:
            with contextlib.suppress(NotFoundError):
                await self._client.stat_path(self._container_id, shell)
                return shell
        return SHELLS[-1]

    async def _exit_code(self, exec_id: str) -> int | None:
        """The exec's exit code, once the engine has recorded it (None if it does not within a second)."""
        with contextlib.suppress(APIError, OSError):
            for _ in range(20):
                info = await self._client.exec_inspect(exec_id)
                if not info.running:
                    return info.exit_code
                await asyncio.sleep(0.05)
        return None

    def _typed(self, data: bytes) -> None:
        if self._input is not None:
            self._input.put_nowait(data)

    def _resized(self, columns: int, rows: int) -> None:
        if self._size_changed is not None:
            self._size_changed.set()

    @staticmethod
    async def _pump_input(connection: HijackedConnection, queue: asyncio.Queue[bytes]) -> None:
        """Keys to the exec's stdin, in order, until the connection breaks."""
        with contextlib.suppress(OSError):
            while True:
                await connection.write(await queue.get())

    async def _pump_size(self, exec_id: str, changed: asyncio.Event) -> None:
        """The terminal's size to the exec whenever it changed (bursts of resizes collapse into one call)."""
        while True:
            await changed.wait()
            changed.clear()
            with contextlib.suppress(APIError, OSError):  # the exec may be ending: its exit is reported anyway
                await self._client.exec_resize(exec_id, self.terminal.rows, self.terminal.columns)
