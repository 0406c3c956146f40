"""The containers tree: standalone containers at the top level, Compose projects as group rows.

A container with the ``com.docker.compose.project`` label sits under its project's group row; the group
shows the project's aggregate state (``running 2/3``). :meth:`ContainersModel.set_rows` updates by key
(container ID, project name) so selections survive events. Group rows carry a stable serial in their
indexes' ``internalId`` so children find their parent whatever moves.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, Qt
from PySide6.QtGui import QColor

from app import formatting
from app.formatting import COMPOSE_PROJECT_LABEL, COMPOSE_SERVICE_LABEL, StateColour
from app.models.table import ROW_ROLE, SORT_ROLE, Index
from backend.api.types import ContainerSummary, Port

COLOUR_ROLE = Qt.ItemDataRole.UserRole + 3  # the StateColour of the row


@dataclass(frozen=True)
class ContainerRow:
    """One container as the table shows it."""

    id: str
    name: str
    image: str
    state: str
    status: str
    ports: tuple[Port, ...]
    created: int
    project: str = ""
    service: str = ""
    image_id: str = ""

    @property
    def key(self) -> str:
        return self.id

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def words(self) -> str:
        return formatting.state_words(self.state, self.status)

    @property
    def colour(self) -> StateColour:
        return formatting.state_colour(self.state, self.status)

    @staticmethod
    def from_summary(summary: ContainerSummary) -> ContainerRow:
        name = summary.names[0].lstrip("/") if summary.names else formatting.short_id(summary.id)
        return ContainerRow(summary.id, name, summary.image, summary.state, summary.status, tuple(summary.ports),
                            summary.created, summary.labels.get(COMPOSE_PROJECT_LABEL, ""),
                            summary.labels.get(COMPOSE_SERVICE_LABEL, ""), summary.image_id)


@dataclass
class ProjectGroup:
    """A Compose project's group row; ``children`` are its containers in model order."""

    name: str
    serial: int
    children: list[ContainerRow] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"project:{self.name}"

    @property
    def running(self) -> int:
        return sum(1 for c in self.children if c.running)

    @property
    def words(self) -> str:
        total, running = len(self.children), self.running
        if running == total:
            return "running"
        return f"running {running}/{total}" if running else "exited"

    @property
    def colour(self) -> StateColour:
        colours = {c.colour for c in self.children}
        for colour in (StateColour.RED, StateColour.AMBER, StateColour.BLUE, StateColour.GREEN):
            if colour in colours:
                return colour
        return StateColour.GREY


Node = ContainerRow | ProjectGroup


class ContainersModel(QAbstractItemModel):
    """Columns: Name, Image, State, Ports, Created. ROW_ROLE gives the ContainerRow or ProjectGroup."""

    COLUMNS = ("Name", "Image", "State", "Ports", "Created")

    def __init__(self) -> None:
        super().__init__()
        self._top: list[Node] = []
        self._groups: dict[int, ProjectGroup] = {}
        self._serials = itertools.count(1)

    # -- contents -------------------------------------------------------------------------------------

    def containers(self) -> list[ContainerRow]:
        """Every container, group members included."""
        rows: list[ContainerRow] = []
        for node in self._top:
            rows.extend(node.children if isinstance(node, ProjectGroup) else [node])
        return rows

    def projects(self) -> list[ProjectGroup]:
        """The Compose project groups."""
        return [node for node in self._top if isinstance(node, ProjectGroup)]

    def find(self, name_or_id: str) -> ContainerRow | None:
        """The container with that name or ID (prefix), None if absent."""
        for row in self.containers():
            if name_or_id in (row.name, row.id) or (len(name_or_id) >= 4 and row.id.startswith(name_or_id)):
                return row
        return None

    def set_rows(self, rows: list[ContainerRow]) -> None:
        """Make the model hold ``rows``: grouped by project, updated by key with the fewest changes."""
        wanted_top: dict[str, list[ContainerRow]] = {}
        for row in rows:
            wanted_top.setdefault(f"project:{row.project}" if row.project else row.id, []).append(row)
        for position in range(len(self._top) - 1, -1, -1):
            node = self._top[position]
            if node.key not in wanted_top:
                self.beginRemoveRows(QModelIndex(), position, position)
                del self._top[position]
                if isinstance(node, ProjectGroup):
                    del self._groups[node.serial]
                self.endRemoveRows()
        for position, node in enumerate(self._top):
            members = wanted_top.pop(node.key)
            if isinstance(node, ProjectGroup):
                self._update_children(node, position, members)
            elif members[0] != node:
                self._top[position] = members[0]
                self._changed(QModelIndex(), position)
        if wanted_top:
            start = len(self._top)
            self.beginInsertRows(QModelIndex(), start, start + len(wanted_top) - 1)
            for key, members in wanted_top.items():
                if key.startswith("project:"):
                    group = ProjectGroup(members[0].project, next(self._serials), list(members))
                    self._groups[group.serial] = group
                    self._top.append(group)
                else:
                    self._top.append(members[0])
            self.endInsertRows()

    def _update_children(self, group: ProjectGroup, group_row: int, members: list[ContainerRow]) -> None:
        parent = self.index(group_row, 0)
        wanted = {row.id: row for row in members}
        for position in range(len(group.children) - 1, -1, -1):
            if group.children[position].id not in wanted:
                self.beginRemoveRows(parent, position, position)
                del group.children[position]
                self.endRemoveRows()
        for position, old in enumerate(group.children):
            new = wanted.pop(old.id)
            if new != old:
                group.children[position] = new
                self._changed(parent, position)
        if wanted:
            start = len(group.children)
            self.beginInsertRows(parent, start, start + len(wanted) - 1)
            group.children.extend(wanted.values())
            self.endInsertRows()
        self._changed(QModelIndex(), group_row)  # the aggregate state

    def _changed(self, parent: QModelIndex, row: int) -> None:
        self.dataChanged.emit(self.index(row, 0, parent), self.index(row, len(self.COLUMNS) - 1, parent))

    def node_at(self, index: Index) -> Node | None:
        """The row or group of ``index``; None for an invalid index."""
        if not index.isValid():
            return None
        if index.internalId() == 0:
            return self._top[index.row()] if index.row() < len(self._top) else None
        group = self._groups.get(index.internalId())
        return group.children[index.row()] if group and index.row() < len(group.children) else None

    # -- display --------------------------------------------------------------------------------------

    def _cell(self, node: Node, column: int) -> str:
        if isinstance(node, ProjectGroup):
            ports = [chip for child in node.children for chip in formatting.port_chips(list(child.ports))]
            created = min(c.created for c in node.children)
            return (node.name, f"compose ({len(node.children)})", node.words, "  ".join(dict.fromkeys(ports)),
                    formatting.age(created))[column]
        return (node.service or node.name if node.project else node.name, node.image, node.words,
                "  ".join(formatting.port_chips(list(node.ports))), formatting.age(node.created))[column]

    def _sort_value(self, node: Node, column: int) -> Any:
        if column == 4:
            return node.created if isinstance(node, ContainerRow) else min(c.created for c in node.children)
        return self._cell(node, column).lower()

    # -- Qt interface ---------------------------------------------------------------------------------

    def index(self, row: int, column: int, parent: Index = QModelIndex()) -> QModelIndex:  # noqa: B008
        if not self.hasIndex(row, column, parent):
            return QModelIndex()
        if not parent.isValid():
            return self.createIndex(row, column, 0)
        node = self.node_at(parent)
        if isinstance(node, ProjectGroup):
            return self.createIndex(row, column, node.serial)
        return QModelIndex()

    def parent(self, index: Index = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        if not index.isValid() or index.internalId() == 0:
            return QModelIndex()
        group = self._groups.get(index.internalId())
        if group is None:
            return QModelIndex()
        return self.createIndex(self._top.index(group), 0, 0)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        if not parent.isValid():
            return len(self._top)
        if parent.column() != 0:
            return 0
        node = self.node_at(parent)
        return len(node.children) if isinstance(node, ProjectGroup) else 0

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return len(self.COLUMNS)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        node = self.node_at(index)
        if node is None:
            return None
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return self._cell(node, index.column())
        if role == Qt.ItemDataRole.ForegroundRole and index.column() == 2:
            return QColor(node.colour.value)
        if role == Qt.ItemDataRole.DecorationRole and index.column() == 0:
            return QColor(node.colour.value)
        if role == COLOUR_ROLE:
            return node.colour
        if role == SORT_ROLE:
            return self._sort_value(node, index.column())
        if role == ROW_ROLE:
            return node
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole \
                and 0 <= section < len(self.COLUMNS):
            return self.COLUMNS[section]
        return None
