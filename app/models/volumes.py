"""The volumes table: name, driver, mount point, created."""

from __future__ import annotations

from dataclasses import dataclass

from app.models.table import RowTableModel
from backend.api.types import Volume


@dataclass(frozen=True)
class VolumeRow:
    """One volume as the table shows it."""

    name: str
    driver: str
    mountpoint: str
    created_at: str

    @property
    def key(self) -> str:
        return self.name

    @staticmethod
    def from_volume(volume: Volume) -> VolumeRow:
        return VolumeRow(volume.name, volume.driver, volume.mountpoint, volume.created_at)


class VolumesModel(RowTableModel[VolumeRow]):
    """Columns: Name, Driver, Mount point, Created."""

    COLUMNS = ("Name", "Driver", "Mount point", "Created")

    def cell(self, row: VolumeRow, column: int) -> str:
        return (row.name, row.driver, row.mountpoint, row.created_at[:19].replace("T", " "))[column]
