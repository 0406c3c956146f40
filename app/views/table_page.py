"""``TablePage``: a page with a title, a count, action buttons, a filter box and a sortable, filterable table.

Sorting uses the models' SORT_ROLE (numbers for sizes and times); the filter matches any column and keeps
a group row when one of its children matches. When the model is empty the page shows ``empty_text``.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QAbstractItemModel, QItemSelectionModel, QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QStackedLayout,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from app.models.table import ROW_ROLE, SORT_ROLE


class TablePage(QWidget):
    """A titled table over ``model``; subclasses add buttons with :meth:`add_button`."""

    def __init__(self, title: str, model: QAbstractItemModel, empty_text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setRecursiveFilteringEnabled(True)
        self.view = QTreeView()
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setUniformRowHeights(True)
        self.view.setAlternatingRowColors(True)
        self.view.setRootIsDecorated(False)
        self.view.selectionModel().selectionChanged.connect(self.update_buttons)
        self.title = QLabel(f"<b>{title}</b>")
        self.count = QLabel()
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.buttons = QHBoxLayout()
        self._selection_buttons: list[QPushButton] = []
        self.empty = QLabel(empty_text)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._stack = QStackedLayout()
        self._stack.addWidget(self.empty)
        self._stack.addWidget(self.view)
        header = QHBoxLayout()
        header.addWidget(self.title)
        header.addStretch(1)
        header.addWidget(self.count)
        toolbar = QHBoxLayout()
        toolbar.addLayout(self.buttons)
        toolbar.addStretch(1)
        toolbar.addWidget(self.filter)
        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addLayout(toolbar)
        layout.addLayout(self._stack)
        for signal in (model.rowsInserted, model.rowsRemoved, model.modelReset, model.dataChanged):
            signal.connect(self._model_changed)
        self._model_changed()

    def add_button(self, text: str, tooltip: str, slot: Callable[[], object], *, needs_selection: bool = True
                   ) -> QPushButton:
        """A toolbar button; ``needs_selection`` ones are enabled only while rows are selected."""
        button = QPushButton(text)
        button.setToolTip(tooltip)
        button.clicked.connect(lambda: slot())  # not slot itself: clicked would pass `checked`
        self.buttons.addWidget(button)
        if needs_selection:
            self._selection_buttons.append(button)
            button.setEnabled(False)
        return button

    def selected_rows(self) -> list[object]:
        """The row objects (ROW_ROLE) of the selected rows, in view order."""
        indexes = sorted(self.view.selectionModel().selectedRows(0), key=lambda i: self.view.visualRect(i).top())
        return [index.data(ROW_ROLE) for index in indexes]

    def update_buttons(self) -> None:
        """Enable the selection buttons when something is selected."""
        selected = self.view.selectionModel().hasSelection()
        for button in self._selection_buttons:
            button.setEnabled(selected)

    def summary(self) -> str:
        """The count text in the header (subclasses say more)."""
        return f"{self.model.rowCount()} total"

    def select(self, predicate: Callable[[object], bool]) -> None:
        """Select the rows (top level and children) whose row object satisfies ``predicate``."""
        self.view.clearSelection()
        flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        pending = [QModelIndex()]
        while pending:
            parent = pending.pop()
            for row in range(self.proxy.rowCount(parent)):
                index = self.proxy.index(row, 0, parent)
                if predicate(index.data(ROW_ROLE)):
                    self.view.selectionModel().select(index, flags)
                pending.append(index)

    def _model_changed(self) -> None:
        self._stack.setCurrentWidget(self.view if self.model.rowCount() else self.empty)
        self.count.setText(self.summary())
        self.update_buttons()
