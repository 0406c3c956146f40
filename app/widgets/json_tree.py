"""A JSON document as a collapsible tree: :class:`JsonModel` (key, value, type columns) and :class:`JsonTree`
(the view with expand all, a key filter and Copy value / Copy path / Copy all JSON).

Paths are written as jq writes them: ``.NetworkSettings.Networks.bridge.IPAddress``, ``.Mounts[0].Source``,
``.Config.Labels["com.docker.compose.project"]``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import QHBoxLayout, QLineEdit, QMenu, QPushButton, QTreeView, QVBoxLayout, QWidget

Index = QModelIndex | QPersistentModelIndex
PATH_ROLE = Qt.ItemDataRole.UserRole + 1  # the node's jq path
VALUE_ROLE = Qt.ItemDataRole.UserRole + 2  # the node's JSON value

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def json_type(value: object) -> str:
    """The JSON type name of a decoded value: object, array, string, number, boolean or null."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else "string"


def child_path(parent: str, key: str | int) -> str:
    """The jq path of ``key`` (an object key or an array index) under ``parent`` ("" is the root)."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if _IDENTIFIER.fullmatch(key) else f"{parent}[{json.dumps(key)}]"


def value_text(value: object) -> str:
    """A value as the user copies it: strings bare, everything else as JSON (objects indented)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2 if isinstance(value, dict | list) else None)


@dataclass
class _Node:
    key: str
    value: Any
    path: str
    parent: int  # serial of the parent node, -1 for top-level nodes
    row: int
    children: list[int] = field(default_factory=list)


class JsonModel(QAbstractItemModel):
    """A read-only tree over one JSON document. Each node's index carries its serial in ``internalId``;
    the whole tree is rebuilt (model reset) by :meth:`set_document`."""

    COLUMNS = ("Key", "Value", "Type")

    def __init__(self) -> None:
        super().__init__()
        self._nodes: list[_Node] = []
        self._top: list[int] = []
        self.document: Any = None

    def set_document(self, document: Any) -> None:
        """Show ``document`` (any decoded JSON; a scalar gives an empty tree)."""
        self.beginResetModel()
        self.document = document
        self._nodes = []
        self._top = self._add_children(document, "", -1)
        self.endResetModel()

    def _add_children(self, value: Any, path: str, parent: int) -> list[int]:
        items: list[tuple[str | int, Any]] = []
        if isinstance(value, dict):
            items = list(value.items())
        elif isinstance(value, list):
            items = list(enumerate(value))
        serials = []
        for row, (key, item) in enumerate(items):
            serial = len(self._nodes)
            node = _Node(str(key) if isinstance(key, str) else f"[{key}]", item, child_path(path, key), parent, row)
            self._nodes.append(node)
            node.children = self._add_children(item, node.path, serial)
            serials.append(serial)
        return serials

    def node_path(self, index: Index) -> str:
        """The jq path of ``index``'s node ("" for an invalid index)."""
        return self._nodes[index.internalId()].path if index.isValid() else ""

    def find(self, path: str) -> QModelIndex:
        """The index (column 0) of the node at jq ``path``; invalid if there is none."""
        for serial, node in enumerate(self._nodes):
            if node.path == path:
                return self.createIndex(node.row, 0, serial)
        return QModelIndex()

    # -- Qt interface ---------------------------------------------------------------------------------

    def index(self, row: int, column: int, parent: Index = QModelIndex()) -> QModelIndex:  # noqa: B008
        siblings = self._nodes[parent.internalId()].children if parent.isValid() else self._top
        if parent.isValid() and parent.column() != 0:
            return QModelIndex()
        if 0 <= row < len(siblings) and 0 <= column < len(self.COLUMNS):
            return self.createIndex(row, column, siblings[row])
        return QModelIndex()

    def parent(self, child: Index = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        if not child.isValid():
            return QModelIndex()
        parent = self._nodes[child.internalId()].parent
        return QModelIndex() if parent < 0 else self.createIndex(self._nodes[parent].row, 0, parent)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        if not parent.isValid():
            return len(self._top)
        return len(self._nodes[parent.internalId()].children) if parent.column() == 0 else 0

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return len(self.COLUMNS)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        node = self._nodes[index.internalId()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            if index.column() == 0:
                return node.key
            if index.column() == 2:
                return json_type(node.value)
            if isinstance(node.value, dict | list):
                return f"{{{len(node.value)}}}" if isinstance(node.value, dict) else f"[{len(node.value)}]"
            return json.dumps(node.value) if not isinstance(node.value, str) else node.value
        if role == PATH_ROLE:
            return node.path
        if role == VALUE_ROLE:
            return node.value
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole \
                and 0 <= section < len(self.COLUMNS):
            return self.COLUMNS[section]
        return None


class JsonTree(QWidget):
    """The tree view of a :class:`JsonModel` with a key filter (parents of matches stay visible), Expand all,
    and copying through buttons, the context menu and Ctrl+C (the current node's value). Expanded nodes stay
    expanded when the document is replaced."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = JsonModel()
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setRecursiveFilteringEnabled(True)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(0)
        self.view = QTreeView()
        self.view.setModel(self.proxy)
        self.view.setUniformRowHeights(True)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._menu)
        self.view.setColumnWidth(0, 260)
        self.view.setColumnWidth(1, 380)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter by key…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._filter)
        bar = QHBoxLayout()
        bar.addWidget(self.filter, 1)
        for text, tip, slot in (("Expand all", "Expand every node", self.view.expandAll),
                                ("Collapse all", "Collapse every node", self.view.collapseAll),
                                ("Copy value", "Copy the selected value (Ctrl+C)", self.copy_value),
                                ("Copy path", "Copy the selected node's path, e.g. .State.Status", self.copy_path),
                                ("Copy all JSON", "Copy the whole document as JSON", self.copy_all)):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(slot)
            bar.addWidget(button)
        QShortcut(QKeySequence.StandardKey.Copy, self.view, self.copy_value,
                  context=Qt.ShortcutContext.WidgetShortcut)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.view)

    def set_document(self, document: Any) -> None:
        """Show ``document``, keeping the nodes that were expanded (by path) expanded."""
        expanded = self._expanded_paths(QModelIndex())
        self.model.set_document(document)
        for path in expanded:
            self.view.expand(self.proxy.mapFromSource(self.model.find(path)))

    def select_path(self, path: str) -> bool:
        """Make the node at jq ``path`` current (expanding its parents); False if it is not shown."""
        index = self.proxy.mapFromSource(self.model.find(path))
        if not index.isValid():
            return False
        self.view.scrollTo(index)
        self.view.setCurrentIndex(index)
        return True

    def copy_value(self) -> None:
        """Copy the current node's value (strings bare, the rest as JSON)."""
        index = self.view.currentIndex()
        if index.isValid():
            QGuiApplication.clipboard().setText(value_text(index.data(VALUE_ROLE)))

    def copy_path(self) -> None:
        """Copy the current node's jq path."""
        index = self.view.currentIndex()
        if index.isValid():
            QGuiApplication.clipboard().setText(index.data(PATH_ROLE))

    def copy_all(self) -> None:
        """Copy the whole document as indented JSON."""
        QGuiApplication.clipboard().setText(json.dumps(self.model.document, indent=2))

    def _filter(self, text: str) -> None:
        self.proxy.setFilterFixedString(text)
        if text:
            self.view.expandAll()

    def _expanded_paths(self, parent: QModelIndex) -> list[str]:
        paths = []
        for row in range(self.proxy.rowCount(parent)):
            index = self.proxy.index(row, 0, parent)
            if self.view.isExpanded(index):
                paths.append(index.data(PATH_ROLE))
                paths.extend(self._expanded_paths(index))
        return paths

    def _menu(self, position: QPoint) -> None:
        menu = QMenu(self)
        menu.addAction("Copy value", self.copy_value)
        menu.addAction("Copy path", self.copy_path)
        menu.addAction("Copy all JSON", self.copy_all)
        menu.exec(self.view.viewport().mapToGlobal(position))
