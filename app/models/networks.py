"""The networks table: name, driver, subnets, the connected containers (names and addresses), ID."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app import formatting
from app.models.table import RowTableModel
from backend.api.types import Network

PREDEFINED_NETWORKS = frozenset({"bridge", "host", "none"})


@dataclass(frozen=True, order=True)
class NetworkMember:
    """A container connected to a network, with its IPv4 address (without the prefix length)."""

    name: str
    address: str

    def __str__(self) -> str:
        return f"{self.name} {self.address}" if self.address else self.name


@dataclass(frozen=True)
class NetworkRow:
    """One network as the table shows it."""

    id: str
    name: str
    driver: str
    subnets: tuple[str, ...]
    containers: int
    members: tuple[NetworkMember, ...] = ()
    internal: bool = False

    @property
    def key(self) -> str:
        return self.id

    @property
    def predefined(self) -> bool:
        """bridge, host and none: the engine's own networks, which cannot be deleted."""
        return self.name in PREDEFINED_NETWORKS

    @staticmethod
    def from_network(network: Network) -> NetworkRow:
        members = sorted(NetworkMember(str(e.get("Name") or formatting.short_id(cid)),
                                       str(e.get("IPv4Address") or "").split("/")[0])
                         for cid, e in network.containers.items())
        return NetworkRow(network.id, network.name, network.driver, tuple(network.subnets), len(members),
                          tuple(members), network.internal)


class NetworksModel(RowTableModel[NetworkRow]):
    """Columns: Name, Driver, Subnets, Containers, ID."""

    COLUMNS = ("Name", "Driver", "Subnets", "Containers", "ID")

    def cell(self, row: NetworkRow, column: int) -> str:
        members = ", ".join(str(m) for m in row.members) if row.members else str(row.containers or "")
        driver = f"{row.driver} (internal)" if row.internal else row.driver
        return (row.name, driver, ", ".join(row.subnets), members, formatting.short_id(row.id))[column]

    def sort_value(self, row: NetworkRow, column: int) -> Any:
        return row.containers if column == 3 else self.cell(row, column).lower()
