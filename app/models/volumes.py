"""The volumes table: name, driver, size, the containers using it, created, mount point.

Rows come from ``GET /volumes``; sizes (from ``/system/df``) and users (container names, from the containers
model's mounts) arrive separately through :meth:`VolumesModel.set_sizes` and :meth:`VolumesModel.set_users`,
which emit ``dataChanged`` for the rows whose numbers changed only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app import formatting
from app.models.table import RowTableModel
from backend.api.types import Volume

SIZE_COLUMN, USERS_COLUMN = 2, 3


@dataclass(frozen=True)
class VolumeRow:
    """One volume as the table shows it."""

    name: str
    driver: str
    mountpoint: str
    created_at: str
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return self.name

    @staticmethod
    def from_volume(volume: Volume) -> VolumeRow:
        return VolumeRow(volume.name, volume.driver, volume.mountpoint, volume.created_at,
                         tuple(sorted(volume.labels.items())))


class VolumesModel(RowTableModel[VolumeRow]):
    """Columns: Name, Driver, Size, Used by, Created, Mount point. An unknown size shows as empty."""

    COLUMNS = ("Name", "Driver", "Size", "Used by", "Created", "Mount point")

    def __init__(self) -> None:
        super().__init__()
        self._sizes: dict[str, int] = {}
        self._users: dict[str, tuple[str, ...]] = {}

    def size_of(self, name: str) -> int | None:
        """The volume's size in bytes from the last ``/system/df``; None while unknown."""
        return self._sizes.get(name)

    def users_of(self, name: str) -> tuple[str, ...]:
        """The names of the containers that mount the volume."""
        return self._users.get(name, ())

    def set_sizes(self, sizes: dict[str, int]) -> None:
        """Volume name -> size in bytes (negative: unknown)."""
        old, self._sizes = self._sizes, {k: v for k, v in sizes.items() if v >= 0}
        self._column_changed(SIZE_COLUMN, lambda name: old.get(name) != self._sizes.get(name))

    def set_users(self, users: dict[str, tuple[str, ...]]) -> None:
        """Volume name -> the names of the containers mounting it."""
        old, self._users = self._users, {k: tuple(sorted(v)) for k, v in users.items() if v}
        self._column_changed(USERS_COLUMN, lambda name: old.get(name) != self._users.get(name))

    def _column_changed(self, column: int, changed: Any) -> None:
        for position, row in enumerate(self._rows):
            if changed(row.name):
                index = self.index(position, column)
                self.dataChanged.emit(index, index)

    def cell(self, row: VolumeRow, column: int) -> str:
        if column == SIZE_COLUMN:
            size = self._sizes.get(row.name)
            return "" if size is None else formatting.size(size)
        if column == USERS_COLUMN:
            return ", ".join(self._users.get(row.name, ()))
        return (row.name, row.driver, "", "", row.created_at[:19].replace("T", " "), row.mountpoint)[column]

    def sort_value(self, row: VolumeRow, column: int) -> Any:
        if column == SIZE_COLUMN:
            return self._sizes.get(row.name, -1)
        if column == USERS_COLUMN:
            return len(self._users.get(row.name, ()))
        return self.cell(row, column).lower()
