"""The Files tab of a container's detail window, and the file browser of a volume.

A volume has no filesystem API of its own, so :func:`open_volume_window` creates a helper container that is
never started: the image of a container that uses the volume (else any local image), the volume mounted at
``/volume``, no network. The engine's archive API resolves ``/volume`` in the volume, so browsing, download
and upload work on it; the helper is removed when the window closes.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent, QShowEvent
from PySide6.QtWidgets import QVBoxLayout, QWidget

from app.actions import ActionRunner
from app.models.volumes import VolumeRow
from app.widgets.file_browser import FileBrowser
from backend.api.client import EngineClient
from backend.api.errors import APIError

VOLUME_MOUNT = "/volume"
HELPER_LABEL = "org.berth.desktop.volume-browser"


class FilesTab(FileBrowser):
    """A container's files, from ``/``; listed the first time the tab is shown."""

    def __init__(self, client: EngineClient, container: str, parent: QWidget | None = None) -> None:
        super().__init__(client, container, "/", parent)
        self._listed_once = False

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._listed_once:
            self._listed_once = True
            self.open("/")


async def create_volume_helper(client: EngineClient, volume: str) -> str:
    """Create (never start) a container with ``volume`` at :data:`VOLUME_MOUNT`, from the image of a container
    that uses it, else any local image. Returns its ID. Raises APIError when no image is local, the
    :mod:`backend.api.errors` class of an engine error (NotFoundError for a missing volume)."""
    await client.inspect_volume(volume)
    users = [c.image_id for c in await client.list_containers(all=True)
             if any(isinstance(m, dict) and m.get("Name") == volume for m in c.raw.get("Mounts") or [])]
    images = users + [image.id for image in await client.list_images()]
    if not images:
        raise APIError("there is no local image to mount the volume in: pull one first (for example busybox)")
    config = {"Image": images[0], "Entrypoint": ["true"], "Cmd": [], "Labels": {HELPER_LABEL: volume},
              "HostConfig": {"Binds": [f"{volume}:{VOLUME_MOUNT}"], "NetworkMode": "none"}}
    created = await client.create_container(config, name=f"berth-files-{volume[:40]}-{secrets.token_hex(3)}")
    return created.id


class VolumeFilesWindow(QWidget):
    """A window browsing ``volume`` through the helper container ``helper``, which ``runner`` (one that outlives
    the window) removes when the window closes."""

    def __init__(self, client: EngineClient, helper: str, volume: str, runner: ActionRunner,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setWindowTitle(f"{volume} — files — Berth")
        self.resize(820, 520)
        self.client, self.helper, self.volume, self._runner = client, helper, volume, runner
        self.browser = FileBrowser(client, helper, VOLUME_MOUNT)
        QVBoxLayout(self).addWidget(self.browser)
        self.browser.open(VOLUME_MOUNT)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.helper:
            self._runner.run(f"Remove the helper container of volume {self.volume}",
                             self.client.remove_container(self.helper, force=True, volumes=True))
            self.helper = ""
        super().closeEvent(event)


async def open_volume_window(client: EngineClient, volume: str, runner: ActionRunner,
                             parent: QWidget) -> VolumeFilesWindow:
    """Create the helper container of ``volume`` and show a window on it (a child window of ``parent``).
    Raises as :func:`create_volume_helper`."""
    window = VolumeFilesWindow(client, await create_volume_helper(client, volume), volume, runner, parent)
    window.show()
    return window


def browse_volumes(rows: Sequence[object], client: EngineClient, runner: ActionRunner, parent: QWidget) -> None:
    """Open a file browser window on each volume among ``rows`` (VolumeRow objects); errors go to ``runner``."""
    for row in rows:
        if isinstance(row, VolumeRow):
            runner.run(f"Browse volume {row.name}", open_volume_window(client, row.name, runner, parent))
