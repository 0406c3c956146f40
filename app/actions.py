"""One shape for async UI work: disable the controls, await the engine, report errors to one banner.

``ActionRunner.run(label, coro, controls)`` starts ``coro`` as an asyncio task; while it runs the ``controls``
are disabled and ``busy`` counts it; an error becomes one line on ``failed(str)`` (never a traceback);
``succeeded(str)`` carries the label when it went well.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget
from shiboken6 import isValid

from app.engine_control import EngineControlError
from app.formatting import describe_error
from backend.api.errors import APIError


class ActionRunner(QObject):
    """Runs UI actions as tasks. Signals: ``failed(message)``, ``succeeded(label)``, ``busy_changed(count)``."""

    failed = Signal(str)
    succeeded = Signal(str)
    busy_changed = Signal(int)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def busy(self) -> int:
        """How many actions are under way."""
        return len(self._tasks)

    def run(self, label: str, coro: Coroutine[Any, Any, object],
            controls: Iterable[QWidget] = ()) -> asyncio.Task[None]:
        """Start ``coro``; ``label`` names it in messages ("Stop web"). Returns the task (tests await it)."""
        widgets = [w for w in controls if w.isEnabled()]
        for widget in widgets:
            widget.setEnabled(False)
        task = asyncio.ensure_future(self._guard(label, coro, widgets))
        self._tasks.add(task)
        self.busy_changed.emit(self.busy)
        task.add_done_callback(self._finished)
        return task

    async def _guard(self, label: str, coro: Coroutine[Any, Any, object], widgets: list[QWidget]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except (APIError, EngineControlError, OSError, ValueError) as exc:
            self.failed.emit(f"{label}: {describe_error(exc)}")
        else:
            self.succeeded.emit(label)
        finally:
            for widget in widgets:
                if isValid(widget):  # the window may have been closed meanwhile
                    widget.setEnabled(True)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.busy_changed.emit(self.busy)
