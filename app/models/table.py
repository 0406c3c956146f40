"""``RowTableModel``: a flat QAbstractTableModel over rows that have a ``key``, updated in place.

:meth:`RowTableModel.set_rows` applies a new list by key: rows gone are removed, changed rows emit
``dataChanged``, new rows are appended, so selections and scroll positions survive updates. Subclasses give
``COLUMNS`` and :meth:`cell` (display text), and may override :meth:`sort_value` and :meth:`decoration`.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

ROW_ROLE = Qt.ItemDataRole.UserRole + 1  # the row object itself
SORT_ROLE = Qt.ItemDataRole.UserRole + 2  # a value that sorts naturally (numbers for sizes and times)

Index = QModelIndex | QPersistentModelIndex


class Keyed(Protocol):
    @property
    def key(self) -> str: ...


R = TypeVar("R", bound=Keyed)


class RowTableModel(QAbstractTableModel, Generic[R]):
    """A table of ``R`` rows, one per key. Not editable."""

    COLUMNS: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[R] = []

    @property
    def rows(self) -> list[R]:
        """A copy of the rows in model order."""
        return list(self._rows)

    def row_at(self, index: Index) -> R | None:
        """The row of ``index`` (any column), None for an invalid index."""
        return self._rows[index.row()] if index.isValid() and index.row() < len(self._rows) else None

    def set_rows(self, rows: list[R]) -> None:
        """Make the model hold ``rows`` (by key), with the fewest row insertions and removals."""
        wanted = {row.key: row for row in rows}
        for position in range(len(self._rows) - 1, -1, -1):
            if self._rows[position].key not in wanted:
                self.beginRemoveRows(QModelIndex(), position, position)
                del self._rows[position]
                self.endRemoveRows()
        for position, old in enumerate(self._rows):
            new = wanted.pop(old.key)
            if new != old:
                self._rows[position] = new
                self.dataChanged.emit(self.index(position, 0), self.index(position, len(self.COLUMNS) - 1))
        if wanted:
            start = len(self._rows)
            self.beginInsertRows(QModelIndex(), start, start + len(wanted) - 1)
            self._rows.extend(wanted.values())
            self.endInsertRows()

    def cell(self, row: R, column: int) -> str:
        """The display text of ``row`` in ``column``."""
        raise NotImplementedError

    def sort_value(self, row: R, column: int) -> Any:
        """The value ``column`` sorts by (the display text unless overridden)."""
        return self.cell(row, column).lower()

    def decoration(self, row: R, column: int) -> Any:
        """A DecorationRole value (None for none)."""
        return None

    # -- Qt interface ---------------------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        row = self.row_at(index)
        if row is None:
            return None
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return self.cell(row, index.column())
        if role == Qt.ItemDataRole.DecorationRole:
            return self.decoration(row, index.column())
        if role == SORT_ROLE:
            return self.sort_value(row, index.column())
        if role == ROW_ROLE:
            return row
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole \
                and 0 <= section < len(self.COLUMNS):
            return self.COLUMNS[section]
        return None
