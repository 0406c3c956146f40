"""Switching contexts from the app: the sidebar's combo box and the tray's Context menu share :func:`switch_context`.

The list is read from the context store (Berth's and Docker's, :mod:`backend.api.contexts`) each time it is shown,
so contexts made with ``berth context create`` or ``docker context create`` appear without a restart. Switching
makes the context current for the CLI too (``berth context use``), as Docker Desktop's switcher does, and moves
the session to its endpoint (TLS included); the pages reload on the session's ``connected``.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QWidget

from app.actions import ActionRunner
from app.engine_session import EngineSession
from backend.api.contexts import DEFAULT_CONTEXT, Context, ContextError, ContextStore, resolve


def available_contexts() -> tuple[list[Context], str]:
    """The contexts and the name of the current one (the environment's choice first; ``default`` when it is
    unreadable)."""
    try:
        current = resolve().context
    except ContextError:
        current = DEFAULT_CONTEXT
    return ContextStore.from_env().contexts(), current


def switch_context(session: EngineSession, runner: ActionRunner, name: str) -> None:
    """Make ``name`` current and reconnect the session to it; failures go to the runner's banner."""

    async def switch() -> None:
        store = ContextStore.from_env()
        context = store.get(name)
        tls = context.tls.ssl_context() if context.tls else None
        store.use(name)
        await session.reconnect(context.host, tls=tls)

    runner.run(f"Switch to context {name}", switch())


class ContextSwitcher(QComboBox):
    """The contexts, the current one selected; choosing another switches to it."""

    def __init__(self, session: EngineSession, runner: ActionRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session, self.runner = session, runner
        self.setToolTip("The engine this window manages (berth context)")
        self.reload()
        self.activated.connect(self._chosen)

    def reload(self) -> None:
        """Re-read the contexts (keeps the current one selected)."""
        contexts, current = available_contexts()
        self.blockSignals(True)
        self.clear()
        for context in contexts:
            self.addItem(context.name, context.name)
            self.setItemData(self.count() - 1, f"{context.host}\n{context.description}".strip(),
                             Qt.ItemDataRole.ToolTipRole)
        self.setCurrentIndex(max(0, self.findData(current)))
        self.blockSignals(False)

    def showPopup(self) -> None:
        self.reload()
        super().showPopup()

    def _chosen(self, index: int) -> None:
        name = self.itemData(index)
        if isinstance(name, str):
            switch_context(self.session, self.runner, name)
