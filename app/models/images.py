"""The images table: one row per image (its tags joined, ``<none>`` when dangling), ID, size, created, in use.

Which containers use an image comes from the live containers (:meth:`ImagesModel.count_users`, by image ID),
since the engine's list does not count them; only the "In use" cells change when it does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt

from app import formatting
from app.models.containers import ContainerRow
from app.models.table import Index, RowTableModel
from backend.api.types import ImageSummary

IN_USE = 4  # the "In use" column


@dataclass(frozen=True)
class ImageRow:
    """One image as the table shows it. ``containers`` is the engine's count, -1 when it did not count them."""

    id: str
    tags: tuple[str, ...]
    size: int
    created: int
    containers: int

    @property
    def key(self) -> str:
        return self.id

    @property
    def name(self) -> str:
        """The first tag, or ``<none>``."""
        return self.tags[0] if self.tags else "<none>"

    @property
    def reference(self) -> str:
        """What to name the image by in API calls: the first tag, else the ID."""
        return self.tags[0] if self.tags else self.id

    @staticmethod
    def from_summary(summary: ImageSummary) -> ImageRow:
        tags = tuple(t for t in summary.repo_tags if t != "<none>:<none>")
        return ImageRow(summary.id, tags, summary.size, summary.created, summary.containers)


class ImagesModel(RowTableModel[ImageRow]):
    """Columns: Repository:tag, ID, Size, Created, In use (tooltip: the containers' names)."""

    COLUMNS = ("Repository:tag", "ID", "Size", "Created", "In use")

    def __init__(self) -> None:
        super().__init__()
        self._users: dict[str, tuple[str, ...]] = {}

    def users(self, row: ImageRow) -> tuple[str, ...]:
        """The names of the containers (any state) made from ``row``'s image, as last counted."""
        return self._users.get(row.id, ())

    def in_use(self, row: ImageRow) -> int:
        """How many containers use the image: those counted, else the engine's count (0 when unknown)."""
        return len(self.users(row)) or max(row.containers, 0)

    def count_users(self, containers: Iterable[ContainerRow]) -> None:
        """Count the users of each image among ``containers``; emits dataChanged for the cells that changed."""
        users: dict[str, list[str]] = {}
        for container in containers:
            users.setdefault(container.image_id, []).append(container.name)
        old, self._users = self._users, {image: tuple(sorted(names)) for image, names in users.items()}
        for position, row in enumerate(self._rows):
            if old.get(row.id, ()) != self._users.get(row.id, ()):
                index = self.index(position, IN_USE)
                self.dataChanged.emit(index, index)

    def cell(self, row: ImageRow, column: int) -> str:
        if column == 0:
            return ", ".join(row.tags) or "<none>"
        if column == 1:
            return formatting.short_id(row.id)
        if column == 2:
            return formatting.size(row.size)
        if column == 3:
            return formatting.age(row.created)
        count = self.in_use(row)
        return "" if not count else f"{count} container{'s' if count > 1 else ''}"

    def sort_value(self, row: ImageRow, column: int) -> Any:
        return {2: row.size, 3: row.created, 4: self.in_use(row)}.get(column, self.cell(row, column).lower())

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        row = self.row_at(index)
        if row is not None and role == Qt.ItemDataRole.ToolTipRole and index.column() == IN_USE:
            return ", ".join(self.users(row)) or None
        return super().data(index, role)
