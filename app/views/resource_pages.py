"""The Images, Volumes and Networks pages: tables with delete (and Pull on Images)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from PySide6.QtWidgets import QWidget

from app.actions import ActionRunner
from app.dialogs.pull import PullDialog
from app.models.images import ImageRow, ImagesModel
from app.models.networks import NetworkRow, NetworksModel
from app.models.volumes import VolumeRow, VolumesModel
from app.views.containers_page import ask
from app.views.table_page import TablePage
from backend.api.client import EngineClient


class _DeletingPage(TablePage):
    """A table page with a Delete button that removes the selected rows after confirmation."""

    def __init__(self, title: str, model: Any, empty: str, runner: ActionRunner,
                 remove: Callable[[Any], Coroutine[Any, Any, object]], describe: Callable[[Any], str],
                 parent: QWidget | None = None) -> None:
        super().__init__(title, model, empty, parent)
        self.runner = runner
        self.confirm: Callable[[str], bool] = lambda question: ask(self, question)
        self._remove, self._describe = remove, describe
        self.delete_button = self.add_button("Delete", f"Delete the selected {title.lower()}", self.delete_selected)

    def delete_selected(self) -> None:
        """Delete the selected rows, one by one, after confirmation."""
        rows = self.selected_rows()
        names = ", ".join(self._describe(r) for r in rows)
        if not rows or not self.confirm(f"Delete {names}?"):
            return

        async def each() -> None:
            for row in rows:
                await self._remove(row)

        self.runner.run(f"Delete {names}", each(), [self.delete_button])


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


class VolumesPage(_DeletingPage):
    def __init__(self, model: VolumesModel, client: EngineClient, runner: ActionRunner,
                 parent: QWidget | None = None) -> None:
        super().__init__("Volumes", model, "No volumes yet. Create one with: berth volume create NAME", runner,
                         lambda row: client.remove_volume(row.name),
                         lambda row: row.name if isinstance(row, VolumeRow) else "", parent)


class NetworksPage(_DeletingPage):
    def __init__(self, model: NetworksModel, client: EngineClient, runner: ActionRunner,
                 parent: QWidget | None = None) -> None:
        super().__init__("Networks", model, "No networks.", runner,
                         lambda row: client.remove_network(row.id),
                         lambda row: row.name if isinstance(row, NetworkRow) else "", parent)
