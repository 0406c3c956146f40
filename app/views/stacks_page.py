"""The Stacks page: a swarm manager's stacks and their services (replicas running/desired, image, mode).

It loads on each connection and when shown (Refresh too); an engine that is no swarm manager gets a sentence
saying so instead of the tree. Stacks are the services' ``com.docker.stack.namespace`` label (Berth's and
Docker's stacks alike); services outside a stack are listed under "(no stack)".
"""

from __future__ import annotations

from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QLabel, QPushButton, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from app.actions import ActionRunner
from app.engine_session import EngineSession
from backend.api.swarm_types import Service
from backend.compose.swarm import STACK_LABEL

NOT_A_MANAGER = "This engine is not a swarm manager: stacks and services appear here when the context is one."


def group_by_stack(services: list[Service]) -> dict[str, list[Service]]:
    """Services by stack name (``(no stack)`` for the others), stacks and services sorted by name."""
    stacks: dict[str, list[Service]] = {}
    for service in sorted(services, key=lambda s: s.name):
        stacks.setdefault(service.labels.get(STACK_LABEL, "(no stack)"), []).append(service)
    return dict(sorted(stacks.items()))


class StacksPage(QWidget):
    """Stacks → services. ``loaded`` is True once the last load finished (tests wait for it)."""

    def __init__(self, session: EngineSession, runner: ActionRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session, self.runner = session, runner
        self.loaded = False
        self.message = QLabel(NOT_A_MANAGER)
        self.message.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Name", "Replicas", "Mode", "Image"])
        self.tree.setColumnWidth(0, 260)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.reload)
        layout = QVBoxLayout(self)
        layout.addWidget(self.message)
        layout.addWidget(self.tree, 1)
        layout.addWidget(refresh)
        self.tree.hide()
        session.connected.connect(self.reload)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.reload()

    def reload(self) -> None:
        """Load the swarm's services (when the engine is a manager)."""
        self.loaded = False
        self.runner.run("Load stacks", self._load())

    async def _load(self) -> None:
        client = self.session.client
        swarm = (await client.info()).raw.get("Swarm") or {}
        manager = bool(swarm.get("ControlAvailable"))
        services = await client.list_services() if manager else []
        self.tree.clear()
        for stack, members in group_by_stack(services).items():
            top = QTreeWidgetItem([stack, f"{len(members)} services", "", ""])
            for service in members:
                top.addChild(QTreeWidgetItem([service.name, f"{service.running}/{service.desired}", service.mode,
                                              service.image]))
            self.tree.addTopLevelItem(top)
            top.setExpanded(True)
        self.message.setVisible(not manager)
        self.tree.setVisible(manager)
        self.loaded = True
