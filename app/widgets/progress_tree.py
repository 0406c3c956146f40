"""``ProgressTree``: one row with a progress bar per layer, fed Docker's pull and push progress messages.

A message with an ``id`` (the short layer ID) updates that layer's row: its status text and its bar (a byte
count when ``progressDetail`` has a total, busy while Downloading/Extracting/Pushing without one, full when the
layer is done). A message without an ``id``, or a pull's "Pulling from"/"Digest:"/"Status:" lines, is an
overall message: :meth:`ProgressTree.show_progress` returns it for the caller's status line.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QProgressBar, QTreeWidget, QTreeWidgetItem, QWidget

BUSY = ("Downloading", "Extracting", "Pushing")
DONE = ("Pull complete", "Already exists", "Download complete", "Pushed", "Layer already exists")
OVERALL = ("Pulling from", "Digest:", "Status:")


class ProgressTree(QTreeWidget):
    """Columns: Layer, Status, Progress. :meth:`clear_layers` empties it for the next pull or push."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setHeaderLabels(["Layer", "Status", "Progress"])
        self.setRootIsDecorated(False)
        self._bars: dict[str, tuple[QTreeWidgetItem, QProgressBar]] = {}

    def clear_layers(self) -> None:
        """Remove every layer row."""
        self.clear()
        self._bars.clear()

    def layers(self) -> dict[str, tuple[str, int, int]]:
        """Each layer's (status, value, maximum) by short ID, in the order they appeared."""
        return {layer: (item.text(1), bar.value(), bar.maximum()) for layer, (item, bar) in self._bars.items()}

    def show_progress(self, message: dict[str, Any]) -> str | None:
        """Apply one progress message; returns its text when it is an overall message (None for a layer's)."""
        layer, status = str(message.get("id") or ""), str(message.get("status") or "")
        if not layer or status.startswith(OVERALL):
            return status
        if layer not in self._bars:
            item = QTreeWidgetItem(self, [layer[:12], status])
            bar = QProgressBar()
            bar.setRange(0, 1)
            bar.setValue(0)
            self.setItemWidget(item, 2, bar)
            self._bars[layer] = (item, bar)
        item, bar = self._bars[layer]
        item.setText(1, status)
        detail = message.get("progressDetail")
        if isinstance(detail, dict) and detail.get("total"):
            bar.setRange(0, int(detail["total"]))
            bar.setValue(int(detail.get("current") or 0))
        elif status in DONE:
            bar.setRange(0, 1)
            bar.setValue(1)
        elif status in BUSY:
            bar.setRange(0, 0)
        return None
