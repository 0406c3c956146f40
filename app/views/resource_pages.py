"""The Images page: a table with Pull… and Delete. (Volumes and Networks: volumes_page.py, networks_page.py.)"""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from app.actions import ActionRunner
from app.dialogs.pull import PullDialog
from app.models.images import ImageRow, ImagesModel
from app.views.table_page import DeletingPage as _DeletingPage
from backend.api.client import EngineClient


class ImagesPage(_DeletingPage):
    """Images with Pull… (progress dialog) and Delete."""

    def __init__(self, model: ImagesModel, client: EngineClient, runner: ActionRunner,
                 parent: QWidget | None = None) -> None:
        super().__init__("Images", model, "No images yet. Pull one with Pull…", runner,
                         lambda row: client.remove_image(row.tags[0] if row.tags else row.id),
                         lambda row: row.name if isinstance(row, ImageRow) else "", parent)
        self.pull_dialog = PullDialog(client, runner, self)
        self.add_button("Pull…", "Pull an image from a registry", self.show_pull, needs_selection=False)

    def show_pull(self) -> None:
        """Open the Pull dialog."""
        self.pull_dialog.show()
        self.pull_dialog.raise_()
