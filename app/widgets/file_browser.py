"""A directory browser over a container's files: a lazy tree model and the widget around it.

:class:`FileTreeModel` holds one directory (the root) and the subdirectories expanded below it; a directory's
entries are asked for (``fetch_requested(path)``) only when the view wants them, and arrive with
:meth:`FileTreeModel.set_children` (:meth:`FileTreeModel.show_root` changes the root). It knows nothing
of the engine, so it is tested on its own.

:class:`FileBrowser` lists with :mod:`app.file_listing` (exec or archive), shows breadcrumbs and a path box,
enters a directory on double-click, downloads the selection to a folder, uploads files and folders (button
or drag and drop) into the current directory. Its work runs through its own ActionRunner; errors are one
line on its banner.
"""

from __future__ import annotations

import html
import posixpath
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QStyle,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from app import file_listing, formatting
from app.actions import ActionRunner
from app.file_listing import FileEntry, Listing
from app.models.table import SORT_ROLE
from app.widgets.banner import ErrorBanner
from backend.api.client import EngineClient

Index = QModelIndex | QPersistentModelIndex


class _Node:
    """A directory entry in the tree; ``children`` is None until its directory was listed."""

    def __init__(self, ident: int, entry: FileEntry | None, path: str, parent: _Node | None, row: int) -> None:
        self.ident, self.entry, self.path, self.parent, self.row = ident, entry, path, parent, row
        self.children: list[_Node] | None = None
        self.loading = False

    @property
    def expandable(self) -> bool:
        return self.entry is not None and self.entry.is_dir and self.children != []


class FileTreeModel(QAbstractItemModel):
    """Entries of the directory ``root_path`` and of the directories expanded below it.

    Columns: Name, Size, Mode, Modified, Link target. ``fetch_requested(path)`` asks for a directory's
    listing (once, until :meth:`set_children` or :meth:`fetch_failed` answers)."""

    COLUMNS = ("Name", "Size", "Mode", "Modified", "Link target")
    fetch_requested = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self._nodes: dict[int, _Node] = {}
        self._serial = 0
        self._root = self._node(None, "/", None, 0)

    @property
    def root_path(self) -> str:
        return self._root.path

    def _node(self, entry: FileEntry | None, path: str, parent: _Node | None, row: int) -> _Node:
        self._serial += 1
        node = _Node(self._serial, entry, path, parent, row)
        self._nodes[node.ident] = node
        return node

    def show_root(self, listing: Listing) -> None:
        """Show the directory of ``listing`` as the root (a reset)."""
        self.beginResetModel()
        self._nodes.clear()
        self._root = self._node(None, listing.path, None, 0)
        self._fill(self._root, listing)
        self.endResetModel()

    def set_children(self, listing: Listing) -> None:
        """Show ``listing`` as the children of its directory if that directory is shown (else drop it)."""
        node = self._find(listing.path)
        if node is None:
            return
        parent = self._index_of(node)
        if node.children:
            self.beginRemoveRows(parent, 0, len(node.children) - 1)
            for child in node.children:
                self._forget(child)
            node.children = []
            self.endRemoveRows()
        if listing.entries:
            self.beginInsertRows(parent, 0, len(listing.entries) - 1)
            self._fill(node, listing)
            self.endInsertRows()
        else:
            node.children, node.loading = [], False
            self.dataChanged.emit(self._index_of(node), self._index_of(node))  # no longer expandable

    def fetch_failed(self, path: str) -> None:
        """The listing of ``path`` failed: it may be asked for again."""
        node = self._find(path)
        if node is not None:
            node.loading = False

    def entry_at(self, index: Index) -> FileEntry | None:
        node = self._node_at(index)
        return node.entry if node else None

    def path_at(self, index: Index) -> str:
        """The absolute path of ``index`` (the root's for an invalid index)."""
        node = self._node_at(index)
        return node.path if node else self._root.path

    def _fill(self, node: _Node, listing: Listing) -> None:
        node.children = [self._node(entry, posixpath.join(node.path, entry.name), node, row)
                         for row, entry in enumerate(listing.entries)]
        node.loading = False

    def _forget(self, node: _Node) -> None:
        self._nodes.pop(node.ident, None)
        for child in node.children or []:
            self._forget(child)

    def _find(self, path: str) -> _Node | None:
        node: _Node | None = self._root
        relative = posixpath.relpath(path, self._root.path)
        if relative.startswith(".."):
            return None
        for name in [] if relative == "." else relative.split("/"):
            node = next((c for c in node.children or [] if c.entry and c.entry.name == name), None) if node else None
        return node

    def _node_at(self, index: Index) -> _Node | None:
        return self._nodes.get(index.internalId()) if index.isValid() else None

    def _index_of(self, node: _Node) -> QModelIndex:
        return QModelIndex() if node is self._root else self.createIndex(node.row, 0, node.ident)

    def _parent_node(self, index: Index) -> _Node | None:
        return self._root if not index.isValid() else self._node_at(index)

    # -- Qt interface ---------------------------------------------------------------------------------

    def index(self, row: int, column: int, parent: Index = QModelIndex()) -> QModelIndex:  # noqa: B008
        node = self._parent_node(parent)
        if node is None or not node.children or not 0 <= row < len(node.children) \
                or not 0 <= column < len(self.COLUMNS) or (parent.isValid() and parent.column() != 0):
            return QModelIndex()
        return self.createIndex(row, column, node.children[row].ident)

    def parent(self, index: Index = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        node = self._node_at(index)
        if node is None or node.parent is None:
            return QModelIndex()
        return self._index_of(node.parent)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        node = self._parent_node(parent)
        return len(node.children or []) if node and (not parent.isValid() or parent.column() == 0) else 0

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return len(self.COLUMNS)

    def hasChildren(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        node = self._parent_node(parent)
        if node is None or (parent.isValid() and parent.column() != 0):
            return False
        return bool(node.children) if node is self._root else node.expandable

    def canFetchMore(self, parent: Index) -> bool:
        node = self._node_at(parent)
        return node is not None and parent.column() == 0 and node.expandable and node.children is None \
            and not node.loading

    def fetchMore(self, parent: Index) -> None:
        if self.canFetchMore(parent):
            node = self._node_at(parent)
            assert node is not None
            node.loading = True
            self.fetch_requested.emit(node.path)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        entry = self.entry_at(index)
        if entry is None:
            return None
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return (entry.name, "" if entry.is_dir else formatting.size(entry.size), entry.mode_text,
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.mtime)), entry.link_target)[column]
        if role == SORT_ROLE:
            return (("1" if not entry.is_dir else "0") + entry.name.lower(), entry.size, entry.mode_text,
                    entry.mtime, entry.link_target)[column]
        if role == Qt.ItemDataRole.ToolTipRole and column == 0:
            return self.path_at(index)
        if role == Qt.ItemDataRole.DecorationRole and column == 0:
            icon = QStyle.StandardPixmap.SP_DirIcon if entry.is_dir else QStyle.StandardPixmap.SP_FileLinkIcon \
                if entry.is_link else QStyle.StandardPixmap.SP_FileIcon
            return QApplication.style().standardIcon(icon)
        if role == Qt.ItemDataRole.TextAlignmentRole and column == 1:
            return Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole \
                and 0 <= section < len(self.COLUMNS):
            return self.COLUMNS[section]
        return None


def breadcrumbs(path: str, top: str) -> list[tuple[str, str]]:
    """``(label, path)`` for ``top`` and each directory from it down to ``path`` (``path`` below ``top``)."""
    crumbs = [(top, top)]
    relative = posixpath.relpath(path, top)
    for name in [] if relative == "." else relative.split("/"):
        crumbs.append((name, posixpath.join(crumbs[-1][1], name)))
    return crumbs


class FileBrowser(QWidget):
    """Browses the files of ``container`` from ``top`` down (the path box and Up never go above it).

    Call :meth:`open` to list a directory; ``listed(Listing)`` is emitted for every listing shown."""

    listed = Signal(object)

    def __init__(self, client: EngineClient, container: str, top: str = "/", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.client, self.container, self.top = client, container, file_listing.clean_path(top)
        self.runner = ActionRunner(self)
        self.banner = ErrorBanner()
        self.runner.failed.connect(self.banner.show_message)
        self.model = FileTreeModel()
        self.model.fetch_requested.connect(self._fetch)
        proxy = QSortFilterProxyModel(self)
        proxy.setSourceModel(self.model)
        proxy.setSortRole(SORT_ROLE)
        self.proxy = proxy
        self.view = QTreeView()
        self.view.setModel(proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setUniformRowHeights(True)
        self.view.setAlternatingRowColors(True)
        self.view.doubleClicked.connect(self._activated)
        self.view.header().resizeSection(0, 280)
        self.crumbs = QLabel()
        self.crumbs.linkActivated.connect(self.open)
        self.path_box = QLineEdit()
        self.path_box.setToolTip("The directory shown; type a path and press Enter")
        self.path_box.returnPressed.connect(lambda: self.open(self.path_box.text()))
        self.status = QLabel()
        self.buttons: dict[str, QPushButton] = {}
        bar = QHBoxLayout()
        for text, tip, slot in (("Up", "The parent directory", self.up),
                                ("Refresh", "List the directory again", self.refresh),
                                ("Download…", "Save the selected files and folders to a local folder",
                                 self.download_selected),
                                ("Upload…", "Copy local files into this directory (or drop them here)",
                                 self.upload_files),
                                ("Upload folder…", "Copy a local folder into this directory", self.upload_folder)):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(lambda _=False, slot=slot: slot())
            bar.addWidget(button)
            self.buttons[text] = button
        bar.addWidget(self.path_box, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner)
        layout.addWidget(self.crumbs)
        layout.addLayout(bar)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.status)
        self.setAcceptDrops(True)

    @property
    def current(self) -> str:
        """The directory shown."""
        return self.model.root_path

    def open(self, path: str) -> None:
        """List the directory ``path`` (clamped to ``top``) and show it."""
        path = file_listing.clean_path(path)
        if posixpath.relpath(path, self.top).startswith(".."):
            path = self.top
        self.runner.run(f"List {path}", self._list(path, root=True), [self.path_box])

    def up(self) -> None:
        if self.current != self.top:
            self.open(posixpath.dirname(self.current))

    def refresh(self) -> None:
        self.open(self.current)

    def selected_paths(self) -> list[str]:
        """The paths of the selected rows (the current directory when nothing is selected)."""
        rows = self.view.selectionModel().selectedRows(0)
        return [self.model.path_at(self.proxy.mapToSource(i)) for i in rows] or [self.current]

    def download_selected(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Download to folder")
        if folder:
            self.download(self.selected_paths(), Path(folder))

    def download(self, paths: Sequence[str], folder: Path) -> None:
        """Save ``paths`` into the local ``folder`` (directories as extracted files)."""
        self.runner.run(f"Download {', '.join(paths)}", self._download(paths, folder),
                        [self.buttons["Download…"]])

    def upload_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, f"Upload to {self.current}")
        if files:
            self.upload([Path(f) for f in files])

    def upload_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, f"Upload a folder to {self.current}")
        if folder:
            self.upload([Path(folder)])

    def upload(self, paths: Sequence[Path]) -> None:
        """Copy local ``paths`` into the current directory, then list it again."""
        directory = self.current
        self.runner.run(f"Upload to {directory}", self._upload(paths, directory),
                        [self.buttons["Upload…"], self.buttons["Upload folder…"]])

    async def _list(self, path: str, *, root: bool) -> None:
        try:
            listing = await file_listing.list_directory(self.client, self.container, path)
        except BaseException:
            self.model.fetch_failed(path)
            raise
        if root:
            self.model.show_root(listing)
            self._show_path(listing)
        else:
            self.model.set_children(listing)
        self.listed.emit(listing)

    async def _download(self, paths: Sequence[str], folder: Path) -> None:
        skipped: list[str] = []
        for path in paths:
            skipped += await file_listing.download(self.client, self.container, path, folder)
        self.status.setText(f"Saved to {folder}" + (f" · skipped {len(skipped)} special or unsafe entries: "
                                                    f"{', '.join(skipped[:5])}" if skipped else ""))

    async def _upload(self, paths: Sequence[Path], directory: str) -> None:
        await file_listing.upload(self.client, self.container, paths, directory)
        if self.current == directory:
            await self._list(directory, root=True)

    def _fetch(self, path: str) -> None:
        self.runner.run(f"List {path}", self._list(path, root=False))

    def _activated(self, index: QModelIndex) -> None:
        source = self.proxy.mapToSource(index)
        entry = self.model.entry_at(source)
        if entry is not None and (entry.is_dir or entry.is_link):
            self.open(self.model.path_at(source))

    def _show_path(self, listing: Listing) -> None:
        self.path_box.setText(listing.path)
        links = [f'<a href="{html.escape(path)}">{html.escape(label)}</a>'
                 for label, path in breadcrumbs(listing.path, self.top)]
        self.crumbs.setText(" / ".join(links))
        self.status.setText(f"{len(listing.entries)} items · listed by {listing.strategy.value}"
                            + (" · listing truncated" if listing.truncated else ""))
        self.buttons["Up"].setEnabled(listing.path != self.top)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and all(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.upload(paths)
