"""The app's one connection to the engine: owns the :class:`EngineClient` and turns ``/events`` into Qt signals.

:class:`EngineSession` watches the engine in one asyncio task (qasync drives asyncio inside Qt): it pings,
then follows ``/events``. While the stream is open the state is RUNNING; when the engine is unreachable the
state is STOPPED and the session tries again every ``retry_interval`` seconds, so the app comes back by itself
when the engine does. Each (re)connection emits ``connected`` so views reload everything once; after that,
views update from ``engine_event`` only (no polling).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from enum import Enum

from PySide6.QtCore import QObject, Signal

from app.formatting import describe_error
from backend.api.client import EngineClient
from backend.api.errors import APIError, EngineUnreachable
from backend.api.host import parse_host


class EngineState(Enum):
    """What the app knows of the engine. STARTING until the first answer (or while the user started it)."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"
    ERROR = "error"


class EngineSession(QObject):
    """Owns ``client``; emits ``state_changed(EngineState, str)`` (state and a message for the user),
    ``connected()`` after each (re)connection and ``engine_event(Event)`` for each engine event."""

    state_changed = Signal(object, str)
    connected = Signal()
    engine_event = Signal(object)

    def __init__(self, client: EngineClient, *, retry_interval: float = 1.0, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client = client
        self.retry_interval = retry_interval
        self.state = EngineState.STARTING
        self.message = "Connecting to the engine…"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start watching the engine (idempotent). Needs a running asyncio loop (qasync)."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._watch())

    async def stop(self) -> None:
        """Stop watching and close the client's streams."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.client.aclose()

    async def reconnect(self, host: str, *, tls: ssl.SSLContext | None = None) -> None:
        """Watch the engine at ``host`` (over ``tls`` when given) from now on (state STARTING until it answers).
        Raises HostError for an unusable address, before anything changes."""
        parse_host(host)
        await self.stop()
        self.client.retarget(host, tls=tls)
        self._set_state(EngineState.STARTING, f"Connecting to {host}…")
        self.start()

    def _set_state(self, state: EngineState, message: str) -> None:
        if (state, message) != (self.state, self.message):
            self.state, self.message = state, message
            self.state_changed.emit(state, message)

    async def _watch(self) -> None:
        while True:
            try:
                await self.client.ping()
                since = time.time()
                self._set_state(EngineState.RUNNING, "The engine is running")
                self.connected.emit()
                async for event in self.client.events(since=since):
                    self.engine_event.emit(event)
                self._set_state(EngineState.STOPPED, "The engine is not running: it closed the connection")
            except EngineUnreachable as exc:
                self._set_state(EngineState.STOPPED, describe_error(exc))
            except (APIError, OSError) as exc:
                self._set_state(EngineState.ERROR, describe_error(exc))
            await asyncio.sleep(self.retry_interval)
