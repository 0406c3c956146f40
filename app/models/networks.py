"""The networks table: name, driver, subnets, connected containers, ID."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app import formatting
from app.models.table import RowTableModel
from backend.api.types import Network


@dataclass(frozen=True)
class NetworkRow:
    """One network as the table shows it."""

    id: str
    name: str
    driver: str
    subnets: tuple[str, ...]
    containers: int

    @property
    def key(self) -> str:
        return self.id

    @staticmethod
    def from_network(network: Network) -> NetworkRow:
        return NetworkRow(network.id, network.name, network.driver, tuple(network.subnets), len(network.containers))


class NetworksModel(RowTableModel[NetworkRow]):
    """Columns: Name, Driver, Subnets, Containers, ID."""

    COLUMNS = ("Name", "Driver", "Subnets", "Containers", "ID")

    def cell(self, row: NetworkRow, column: int) -> str:
        return (row.name, row.driver, ", ".join(row.subnets), str(row.containers), formatting.short_id(row.id))[column]

    def sort_value(self, row: NetworkRow, column: int) -> Any:
        return row.containers if column == 3 else self.cell(row, column).lower()
