"""``TablePage``: a page with a title, a count, action buttons, a filter box and a sortable, filterable table.

Sorting uses the models' SORT_ROLE (numbers for sizes and times). The filter text matches a row object's
``search_text`` when it has one, else any column's text; ``row_filter`` (a predicate on the row object) narrows
further. A group row stays while one of its children matches. When the model is empty the page shows
``empty_text``. :class:`DeletingPage` adds a Delete button; :class:`JsonDialog` shows an inspect document;
:class:`FormDialog` is the base of the Create dialogs (errors shown inline, the dialog stays open).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
)
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QStackedLayout,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from app.actions import ActionRunner
from app.models.table import ROW_ROLE, SORT_ROLE


def ask(parent: QWidget, question: str) -> bool:
    """A yes/no confirmation dialog."""
    answer = QMessageBox.question(parent, "Berth", question)
    return answer == QMessageBox.StandardButton.Yes


class RowFilterProxy(QSortFilterProxyModel):
    """Sorts by SORT_ROLE; keeps the rows whose text contains ``text`` (case-insensitive) and whose row object
    satisfies ``row_filter``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setRecursiveFilteringEnabled(True)
        self.text = ""
        self.row_filter: Callable[[object], bool] | None = None

    def set_text(self, text: str) -> None:
        """Filter by ``text`` (re-filters at once)."""
        self.beginFilterChange()
        self.text = text.strip().lower()
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def set_row_filter(self, predicate: Callable[[object], bool] | None) -> None:
        """Filter by ``predicate`` on the row objects (None: all rows)."""
        self.beginFilterChange()
        self.row_filter = predicate
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Models that sort themselves (``sorts_itself``) do; the proxy then keeps their order."""
        if getattr(self.sourceModel(), "sorts_itself", False):
            self.sourceModel().sort(column, order)
        else:
            super().sort(column, order)

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex) -> bool:
        if not self.text and self.row_filter is None:
            return True
        model = self.sourceModel()
        row = model.index(source_row, 0, source_parent).data(ROW_ROLE)
        if self.row_filter is not None and not self.row_filter(row):
            return False
        if not self.text:
            return True
        haystack = getattr(row, "search_text", None)
        if not isinstance(haystack, str):
            haystack = " ".join(str(model.index(source_row, c, source_parent).data() or "")
                                for c in range(model.columnCount(source_parent)))
        return self.text in haystack.lower()


class TablePage(QWidget):
    """A titled table over ``model``; subclasses add buttons with :meth:`add_button`."""

    def __init__(self, title: str, model: QAbstractItemModel, empty_text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.proxy = RowFilterProxy(self)
        self.proxy.setSourceModel(model)
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
        self.filter.textChanged.connect(self.proxy.set_text)
        self.buttons = QHBoxLayout()
        self._selection_buttons: list[tuple[QPushButton, Callable[[list[Any]], bool] | None]] = []
        self.empty = QLabel(empty_text)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._stack = QStackedLayout()
        self._stack.addWidget(self.empty)
        self._stack.addWidget(self.view)
        header = QHBoxLayout()
        header.addWidget(self.title)
        header.addStretch(1)
        header.addWidget(self.count)
        self.toolbar = QHBoxLayout()
        self.toolbar.addLayout(self.buttons)
        self.toolbar.addStretch(1)
        self.toolbar.addWidget(self.filter)
        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addLayout(self.toolbar)
        layout.addLayout(self._stack)
        self._refresh = QTimer(self)  # one summary update per burst of model changes
        self._refresh.setSingleShot(True)
        self._refresh.timeout.connect(self._model_changed)
        for signal in (model.rowsInserted, model.rowsRemoved, model.modelReset, model.dataChanged):
            signal.connect(self._refresh.start)
        self._model_changed()

    def add_button(self, text: str, tooltip: str, slot: Callable[[], object], *, needs_selection: bool = True,
                   enabled_for: Callable[[list[Any]], bool] | None = None) -> QPushButton:
        """A toolbar button; ``needs_selection`` ones are enabled only while rows are selected (and, with
        ``enabled_for``, only while it returns true for the selected row objects)."""
        button = QPushButton(text)
        button.setToolTip(tooltip)
        button.clicked.connect(lambda: slot())  # not slot itself: clicked would pass `checked`
        self.buttons.addWidget(button)
        if needs_selection:
            self._selection_buttons.append((button, enabled_for))
            button.setEnabled(False)
        return button

    def selected_rows(self) -> list[Any]:
        """The row objects (ROW_ROLE) of the selected rows, in view order."""
        indexes = sorted(self.view.selectionModel().selectedRows(0), key=lambda i: self.view.visualRect(i).top())
        return [index.data(ROW_ROLE) for index in indexes]

    def update_buttons(self) -> None:
        """Enable the selection buttons that apply to the selection."""
        selected = self.selected_rows() if self.view.selectionModel().hasSelection() else []
        for button, enabled_for in self._selection_buttons:
            button.setEnabled(bool(selected) and (enabled_for is None or enabled_for(selected)))

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


class DeletingPage(TablePage):
    """A table page with a Delete button that removes the selected rows after confirmation (``confirm`` is
    replaceable). ``deletable`` says which rows may be deleted (the button is disabled otherwise).
    :meth:`add_inspect_button` adds Inspect."""

    def __init__(self, title: str, model: Any, empty: str, runner: ActionRunner,
                 remove: Callable[[Any], Coroutine[Any, Any, object]], describe: Callable[[Any], str],
                 parent: QWidget | None = None, *, deletable: Callable[[Any], bool] | None = None) -> None:
        super().__init__(title, model, empty, parent)
        self.runner = runner
        self.confirm: Callable[[str], bool] = lambda question: ask(self, question)
        self._remove, self._describe = remove, describe
        self._deletable = deletable or (lambda _row: True)
        self.inspect_dialog: JsonDialog | None = None
        self.delete_button = self.add_button(
            "Delete", f"Delete the selected {title.lower()}", self.delete_selected,
            enabled_for=lambda rows: all(self._deletable(r) for r in rows))

    def delete_selected(self) -> None:
        """Delete the selected rows, one by one, after confirmation; does nothing if one may not be deleted."""
        rows = self.selected_rows()
        names = ", ".join(self._describe(r) for r in rows)
        if not rows or not all(self._deletable(r) for r in rows) or not self.confirm(f"Delete {names}?"):
            return

        async def each() -> None:
            for row in rows:
                await self._remove(row)

        self.runner.run(f"Delete {names}", each(), [self.delete_button])

    def add_inspect_button(self, fetch: Callable[[Any], Coroutine[Any, Any, tuple[str, object]]]) -> QPushButton:
        """An Inspect button for one selected row: ``fetch(row)`` gives a title and the document, shown in a
        :class:`JsonDialog` kept in ``inspect_dialog``."""

        def inspect() -> None:
            rows = self.selected_rows()
            if len(rows) != 1:
                return

            async def show() -> None:
                title, document = await fetch(rows[0])
                self.inspect_dialog = JsonDialog(title, document, self)
                self.inspect_dialog.show()

            self.runner.run(f"Inspect {self._describe(rows[0])}", show())

        return self.add_button("Inspect", "Show the selected row's inspect document", inspect,
                               enabled_for=lambda rows: len(rows) == 1)


class JsonDialog(QDialog):
    """A read-only, monospace view of a JSON document (an inspect result) with a Close button."""

    def __init__(self, title: str, document: object, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(640, 560)
        self.text = QPlainTextEdit(json.dumps(document, indent=2, sort_keys=True))
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)


def parse_labels(text: str) -> dict[str, str]:
    """``a=1, b=two`` as a dict. Raises ValueError naming the entry that is not KEY=VALUE."""
    labels: dict[str, str] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"Label '{entry}': expected KEY=VALUE")
        labels[key.strip()] = value.strip()
    return labels


class FormDialog(QDialog):
    """A form with OK/Cancel and an inline error line. Subclasses add rows to ``form`` and implement
    :meth:`check`; OK closes the dialog only when ``check`` raises no ValueError (its text is shown)."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.form = QFormLayout()
        self.error = QLabel()
        self.error.setStyleSheet("color: #d23c3c;")
        self.error.setWordWrap(True)
        self.error.hide()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)

    def check(self) -> None:
        """Validate the fields; raises ValueError with a message for the user."""

    def accept(self) -> None:
        try:
            self.check()
        except ValueError as exc:
            self.error.setText(str(exc))
            self.error.show()
            return
        self.error.hide()
        super().accept()
