"""The Images page: the images table with Pull…, Run…, Tag…, Push…, History and Delete.

Double-click runs the image (the Run dialog). Delete names the containers that use an image (counted from the
live containers model) and, once confirmed, deletes an image in use by force. A container run without
"background" opens its logs through ``open_detail(ContainerRow)``.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QDialog, QWidget

from app.actions import ActionRunner
from app.dialogs.history import HistoryDialog
from app.dialogs.pull import PullDialog
from app.dialogs.push import PushDialog
from app.dialogs.run import RunDialog
from app.dialogs.tag import TagDialog
from app.live import LiveData
from app.models.containers import ContainerRow
from app.models.images import ImageRow, ImagesModel
from app.views.table_page import TablePage, ask
from backend.api.client import EngineClient


class ImagesPage(TablePage):
    """``confirm`` asks before deleting (replaceable); ``dialog`` is the last dialog opened (tests)."""

    open_detail = Signal(object)

    def __init__(self, live: LiveData, client: EngineClient, runner: ActionRunner,
                 parent: QWidget | None = None) -> None:
        super().__init__("Images", live.images, "No images yet. Pull one with Pull…", parent)
        self.images: ImagesModel = live.images
        self.live, self.client, self.runner = live, client, runner
        self.confirm: Callable[[str], bool] = lambda question: ask(self, question)
        self.dialog: QDialog | None = None
        self.pull_dialog = PullDialog(client, runner, self)
        self.add_button("Pull…", "Pull an image from a registry", self.show_pull, needs_selection=False)
        self.run_button = self.add_button("Run…", "Run a container from the selected image", self.show_run)
        self.add_button("Tag…", "Give the selected image another name", self.show_tag)
        self.add_button("Push…", "Push the selected image to its registry", self.show_push)
        self.add_button("History", "The layers of the selected image", self.show_history)
        self.delete_button = self.add_button("Delete", "Delete the selected images", self.delete_selected)
        self.view.doubleClicked.connect(lambda index: self.show_run())
        self._recount = QTimer(self)
        self._recount.setSingleShot(True)
        self._recount.setInterval(0)
        self._recount.timeout.connect(lambda: self.images.count_users(live.containers.containers()))
        containers = live.containers
        for signal in (containers.rowsInserted, containers.rowsRemoved, containers.modelReset,
                       containers.dataChanged):
            signal.connect(self._recount.start)

    def selected_images(self) -> list[ImageRow]:
        """The selected image rows, in view order."""
        return [row for row in self.selected_rows() if isinstance(row, ImageRow)]

    def _open(self, dialog: QDialog) -> None:
        dialog.show()
        dialog.raise_()
        self.dialog = dialog

    def show_pull(self) -> None:
        """Open the Pull dialog."""
        self.pull_dialog.show()
        self.pull_dialog.raise_()

    def show_run(self) -> None:
        """Open the Run dialog for the (first) selected image, or with no image when none is selected."""
        rows = self.selected_images()
        dialog = RunDialog(self.client, self.runner, self.live.networks, rows[0].reference if rows else "", self)
        dialog.started.connect(self._started)
        self._open(dialog)

    def show_tag(self) -> None:
        """Open the Tag dialog for the (first) selected image."""
        rows = self.selected_images()
        if rows:
            self._open(TagDialog(self.client, self.runner, rows[0].reference, self))

    def show_push(self) -> None:
        """Open the Push dialog for the (first) selected image's tags."""
        rows = self.selected_images()
        if rows:
            self._open(PushDialog(self.client, self.runner, rows[0].tags, self))

    def show_history(self) -> None:
        """Open the History dialog for the (first) selected image."""
        rows = self.selected_images()
        if rows:
            self._open(HistoryDialog(self.client, self.runner, rows[0].reference, self))

    def delete_question(self, rows: list[ImageRow]) -> tuple[str, bool]:
        """The confirmation question for deleting ``rows`` and whether it needs force (an image is in use)."""
        lines = []
        for row in rows:
            users = self.images.users(row)
            if users:
                lines.append(f"{row.name} is used by {len(users)} container{'s' if len(users) > 1 else ''}: "
                             f"{', '.join(users)}")
        if lines:
            return "\n".join(lines) + " — delete anyway (force)?", True
        return f"Delete {', '.join(row.name for row in rows)}?", False

    def delete_selected(self) -> None:
        """Delete the selected images after confirmation: each tag is removed (a dangling image by ID)."""
        rows = self.selected_images()
        if not rows:
            return
        question, force = self.delete_question(rows)
        if not self.confirm(question):
            return

        async def each() -> None:
            for row in rows:
                for reference in row.tags or (row.id,):
                    await self.client.remove_image(reference, force=force)

        self.runner.run(f"Delete {', '.join(row.name for row in rows)}", each(), [self.delete_button])

    def _started(self, container_id: str, detach: bool) -> None:
        if not detach:
            self.runner.run("Open the logs", self._open_logs(container_id))

    async def _open_logs(self, container_id: str) -> None:
        summaries = await self.client.list_containers(all=True, filters={"id": [container_id]})
        for summary in summaries:
            self.open_detail.emit(ContainerRow.from_summary(summary))
