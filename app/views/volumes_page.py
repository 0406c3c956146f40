"""The Volumes page: create (name, driver, labels), inspect, delete; each volume's size and the containers using it.

Sizes come from ``/system/df`` when the page is shown and when volumes come or go while it is visible (one
request at a time, coalesced); "Used by" follows the containers model (its rows' named-volume mounts), no
request needed.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QComboBox, QLineEdit, QWidget

from app.actions import ActionRunner
from app.live import Reloader
from app.models.containers import ContainersModel
from app.models.volumes import VolumeRow, VolumesModel
from app.views.files_tab import browse_volumes
from app.views.table_page import DeletingPage, FormDialog, parse_labels
from backend.api.client import EngineClient


class CreateVolumeDialog(FormDialog):
    """Name (empty: the engine picks one), driver and labels (``a=1, b=2``)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Create volume", parent)
        self.name = QLineEdit()
        self.name.setPlaceholderText("empty: a random name")
        self.driver = QComboBox()
        self.driver.setEditable(True)
        self.driver.addItem("local")
        self.labels = QLineEdit()
        self.labels.setPlaceholderText("key=value, key2=value2")
        self.form.addRow("Name", self.name)
        self.form.addRow("Driver", self.driver)
        self.form.addRow("Labels", self.labels)

    def check(self) -> None:
        parse_labels(self.labels.text())
        if not self.driver.currentText().strip():
            raise ValueError("Driver: required (local)")


class VolumesPage(DeletingPage):
    """Volumes with Create…, Inspect and Delete. ``inspect_dialog`` is the last inspect window opened."""

    def __init__(self, model: VolumesModel, containers: ContainersModel, client: EngineClient, runner: ActionRunner,
                 parent: QWidget | None = None) -> None:
        super().__init__("Volumes", model, "No volumes yet. Create one with Create…", runner,
                         lambda row: client.remove_volume(row.name),
                         lambda row: row.name if isinstance(row, VolumeRow) else "", parent)
        self.volumes, self.containers, self.client = model, containers, client
        self.create_button = self.add_button("Create…", "Create a volume", self.show_create, needs_selection=False)
        self.inspect_button = self.add_inspect_button(self._inspect)
        self.browse_button = self.add_button("Browse files", "Browse the files of the selected volume",
                                             lambda: browse_volumes(self.selected_rows(), client, runner, self))
        self._sizes = Reloader(self._load_sizes, runner.failed.emit)
        self._users_timer = QTimer(self)  # coalesces a burst of container changes into one update
        self._users_timer.setSingleShot(True)
        self._users_timer.timeout.connect(self._update_users)
        for signal in (containers.rowsInserted, containers.rowsRemoved, containers.modelReset, containers.dataChanged):
            signal.connect(self._users_timer.start)
        for signal in (model.rowsInserted, model.rowsRemoved):
            signal.connect(self._volumes_changed)
        self._update_users()

    def show_create(self) -> CreateVolumeDialog:
        """Open the Create dialog; OK creates the volume (errors go to the banner)."""
        dialog = CreateVolumeDialog(self)
        dialog.accepted.connect(lambda: self._create(dialog))
        dialog.show()
        return dialog

    def _create(self, dialog: CreateVolumeDialog) -> None:
        name = dialog.name.text().strip()
        self.runner.run(f"Create volume {name}".rstrip(),
                        self.client.create_volume(name or None, driver=dialog.driver.currentText().strip(),
                                                  labels=parse_labels(dialog.labels.text())),
                        [self.create_button])

    async def _inspect(self, row: VolumeRow) -> tuple[str, object]:
        volume = await self.client.inspect_volume(row.name)
        return f"Volume {volume.name}", volume.raw

    def refresh_sizes(self) -> None:
        """Ask ``/system/df`` for the sizes (coalesced with a request under way)."""
        self._sizes.request()

    async def _load_sizes(self) -> None:
        usage = await self.client.disk_usage()
        sizes: dict[str, int] = {}
        for volume in usage.get("Volumes") or []:
            data = volume.get("UsageData") if isinstance(volume, dict) else None
            if isinstance(data, dict) and isinstance(data.get("Size"), int):
                sizes[str(volume.get("Name"))] = data["Size"]
        self.volumes.set_sizes(sizes)

    def _update_users(self) -> None:
        users: dict[str, list[str]] = {}
        for row in self.containers.containers():
            for volume in row.volumes:
                users.setdefault(volume, []).append(row.name)
        self.volumes.set_users({name: tuple(names) for name, names in users.items()})

    def _volumes_changed(self) -> None:
        if self.isVisible():
            self.refresh_sizes()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh_sizes()
