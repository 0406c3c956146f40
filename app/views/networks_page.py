"""The Networks page: create (driver, subnet, gateway, internal, labels), inspect, delete; connected containers.

The predefined networks (bridge, host, none) cannot be deleted: Delete is disabled while one is selected.
Subnet and gateway are checked with :mod:`ipaddress` before anything is sent; errors show in the dialog.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from PySide6.QtWidgets import QCheckBox, QComboBox, QLineEdit, QWidget

from app.actions import ActionRunner
from app.models.networks import NetworkRow, NetworksModel
from app.views.table_page import DeletingPage, FormDialog, parse_labels
from backend.api.client import EngineClient


@dataclass(frozen=True)
class NetworkSpec:
    """What Create sends: ``client.create_network(name, driver=..., subnet=..., ...)``."""

    name: str
    driver: str
    subnet: str
    gateway: str
    internal: bool
    labels: dict[str, str]


def network_spec(name: str, driver: str, subnet: str, gateway: str, internal: bool, labels: str) -> NetworkSpec:
    """The validated request. Raises ValueError with a message naming the field (a subnet with host bits set
    says which network was meant)."""
    name, driver, subnet, gateway = name.strip(), driver.strip(), subnet.strip(), gateway.strip()
    if not name:
        raise ValueError("Name: required")
    if not driver:
        raise ValueError("Driver: required (bridge)")
    network = None
    if subnet:
        try:
            network = ipaddress.ip_network(subnet)
        except ValueError:
            try:
                meant = ipaddress.ip_network(subnet, strict=False)
            except ValueError:
                raise ValueError(f"Subnet '{subnet}': expected a network such as 172.30.0.0/16") from None
            raise ValueError(f"Subnet '{subnet}' has host bits set: did you mean {meant}?") from None
    if gateway:
        if network is None:
            raise ValueError("Gateway: needs a subnet")
        try:
            address = ipaddress.ip_address(gateway)
        except ValueError:
            raise ValueError(f"Gateway '{gateway}': expected an IP address") from None
        if address not in network:
            raise ValueError(f"Gateway {gateway} is not in the subnet {network}")
    return NetworkSpec(name, driver, str(network or ""), gateway, internal, parse_labels(labels))


class CreateNetworkDialog(FormDialog):
    """Name, driver, subnet, gateway, internal and labels; :attr:`spec` is the request once accepted."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Create network", parent)
        self.name = QLineEdit()
        self.driver = QComboBox()
        self.driver.setEditable(True)
        self.driver.addItems(["bridge", "macvlan", "ipvlan"])
        self.subnet = QLineEdit()
        self.subnet.setPlaceholderText("empty: the engine picks one, e.g. 172.30.0.0/16")
        self.gateway = QLineEdit()
        self.gateway.setPlaceholderText("empty: the subnet's first address")
        self.internal = QCheckBox("Internal (no access to the outside)")
        self.labels = QLineEdit()
        self.labels.setPlaceholderText("key=value, key2=value2")
        for label, widget in (("Name", self.name), ("Driver", self.driver), ("Subnet", self.subnet),
                              ("Gateway", self.gateway), ("", self.internal), ("Labels", self.labels)):
            self.form.addRow(label, widget)
        self.spec: NetworkSpec | None = None

    def check(self) -> None:
        self.spec = network_spec(self.name.text(), self.driver.currentText(), self.subnet.text(),
                                 self.gateway.text(), self.internal.isChecked(), self.labels.text())


class NetworksPage(DeletingPage):
    """Networks with Create…, Inspect and Delete. ``inspect_dialog`` is the last inspect window opened."""

    def __init__(self, model: NetworksModel, client: EngineClient, runner: ActionRunner,
                 parent: QWidget | None = None) -> None:
        super().__init__("Networks", model, "No networks.", runner, lambda row: client.remove_network(row.id),
                         lambda row: row.name if isinstance(row, NetworkRow) else "", parent,
                         deletable=lambda row: isinstance(row, NetworkRow) and not row.predefined)
        self.client = client
        self.delete_button.setToolTip("Delete the selected networks (not bridge, host or none)")
        self.create_button = self.add_button("Create…", "Create a network", self.show_create, needs_selection=False)
        self.inspect_button = self.add_inspect_button(self._inspect)

    def show_create(self) -> CreateNetworkDialog:
        """Open the Create dialog; OK creates the network (engine errors go to the banner)."""
        dialog = CreateNetworkDialog(self)
        dialog.accepted.connect(lambda: self._create(dialog.spec))
        dialog.show()
        return dialog

    def _create(self, spec: NetworkSpec | None) -> None:
        if spec is not None:
            self.runner.run(f"Create network {spec.name}",
                            self.client.create_network(spec.name, driver=spec.driver, subnet=spec.subnet,
                                                       gateway=spec.gateway, internal=spec.internal,
                                                       labels=spec.labels),
                            [self.create_button])

    async def _inspect(self, row: NetworkRow) -> tuple[str, object]:
        network = await self.client.inspect_network(row.id)
        return f"Network {network.name}", network.raw
