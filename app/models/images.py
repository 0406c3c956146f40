"""The images table: one row per image (its tags joined), size, created, in use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app import formatting
from app.models.table import RowTableModel
from backend.api.types import ImageSummary


@dataclass(frozen=True)
class ImageRow:
    """One image as the table shows it. ``containers`` is -1 when the engine did not count them."""

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

    @staticmethod
    def from_summary(summary: ImageSummary) -> ImageRow:
        tags = tuple(t for t in summary.repo_tags if t != "<none>:<none>")
        return ImageRow(summary.id, tags, summary.size, summary.created, summary.containers)


class ImagesModel(RowTableModel[ImageRow]):
    """Columns: Tags, ID, Size, Created, In use."""

    COLUMNS = ("Tags", "ID", "Size", "Created", "In use")

    def cell(self, row: ImageRow, column: int) -> str:
        if column == 0:
            return ", ".join(row.tags) or "<none>"
        if column == 1:
            return formatting.short_id(row.id)
        if column == 2:
            return formatting.size(row.size)
        if column == 3:
            return formatting.age(row.created)
        return "" if row.containers <= 0 else f"{row.containers} container{'s' if row.containers > 1 else ''}"

    def sort_value(self, row: ImageRow, column: int) -> Any:
        return {2: row.size, 3: row.created, 4: row.containers}.get(column, self.cell(row, column).lower())
