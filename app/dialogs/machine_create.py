"""The Create machine dialog: name, base image (URL or file) and its SHA-256, CPUs, memory, disk and the resource
saver's idle time, then ``berth machine init`` with a busy indicator.

The name and the SHA-256 (64 hexadecimal digits) are checked as they are typed and Create stays disabled
until both are good; the resources start from Settings' VM resources within this host's limits. What init
refuses (a wrong SHA-256, an unreachable URL) reaches the banner as the CLI's one line and the dialog stays
open; nothing of the machine is created then.
"""

from __future__ import annotations

import asyncio
import re

from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.machines import MachineMonitor
from app.settings import MACHINE_NAME
from backend.api.machines import DEFAULT_IDLE_TIMEOUT, SHA256_HEX_LENGTH

ERROR_STYLE = "color: #d23c3c;"
SHA256 = re.compile(rf"^[0-9a-fA-F]{{{SHA256_HEX_LENGTH}}}$")


def spin(low: int, high: int, value: int, suffix: str, step: int = 1) -> QSpinBox:
    """A spin box over ``low..high`` (widened to hold ``value``) showing ``value``."""
    box = QSpinBox()
    box.setRange(min(low, value), max(high, value))
    box.setSingleStep(step)
    box.setSuffix(suffix)
    box.setValue(value)
    return box


def idle_spin(value: int) -> QSpinBox:
    """The resource saver's idle time in seconds; 0 reads "never"."""
    box = spin(0, 86400, value, " s", 60)
    box.setSpecialValueText("never")
    box.setToolTip("Pause the machine after this long without running containers or API requests")
    return box


def problem(name: str, sha256: str) -> str:
    """What is wrong with the typed name or SHA-256 ("" when nothing is; an empty SHA-256 is not wrong yet)."""
    if not MACHINE_NAME.match(name):
        return "Name: lower-case letters, digits, '_', '.', '-' (starting with a letter or digit)"
    if sha256 and not SHA256.match(sha256):
        return f"SHA-256: {SHA256_HEX_LENGTH} hexadecimal digits (sha256sum prints them), not {len(sha256)} characters"
    return ""


class MachineCreateDialog(QDialog):
    """Create a machine; accepted (and the new machine chosen in the settings) once init succeeded.
    ``error`` shows what is wrong with the form, ``busy`` runs while init works."""

    def __init__(self, monitor: MachineMonitor, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Create machine — Berth")
        self.monitor = monitor
        settings, limits = monitor.settings, monitor.settings.limits
        self.task: asyncio.Task[None] | None = None
        self.name = QLineEdit(settings.machine_name)
        self.image = QLineEdit()
        self.image.setPlaceholderText("https://…/image.tar or a file")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        image_row = QHBoxLayout()
        image_row.addWidget(self.image, 1)
        image_row.addWidget(browse)
        self.sha256 = QLineEdit()
        self.sha256.setPlaceholderText(f"{SHA256_HEX_LENGTH} hexadecimal digits")
        self.cpus = spin(limits.min_cpus, limits.max_cpus, settings.vm_cpus, " CPUs")
        self.memory = spin(limits.min_memory_mib, limits.max_memory_mib, settings.vm_memory_mib, " MiB", 256)
        self.disk = spin(limits.min_disk_gib, limits.max_disk_gib, settings.vm_disk_gib, " GiB", 8)
        self.idle = idle_spin(DEFAULT_IDLE_TIMEOUT)
        self.error = QLabel()
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.setWordWrap(True)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setFormat("Verifying the image and creating the machine…")
        self.busy.setTextVisible(True)
        self.busy.hide()
        self.create_button = QPushButton("Create")
        self.create_button.setDefault(True)
        self.create_button.clicked.connect(self.create_machine)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.reject)
        form = QFormLayout()
        form.addRow("Name:", self.name)
        form.addRow("Image:", image_row)
        form.addRow("SHA-256:", self.sha256)
        form.addRow("CPUs:", self.cpus)
        form.addRow("Memory:", self.memory)
        form.addRow("Disk:", self.disk)
        form.addRow("Resource saver:", self.idle)
        buttons = QHBoxLayout()
        buttons.addWidget(self.busy, 1)
        buttons.addWidget(cancel)
        buttons.addWidget(self.create_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addLayout(buttons)
        for field in (self.name, self.image, self.sha256):
            field.textChanged.connect(self._validate)
        self._validate()

    def _ready(self) -> bool:
        """Whether the form is complete and nothing in it is wrong; shows what is wrong."""
        text = problem(self.name.text().strip(), self.sha256.text().strip())
        self.error.setText(text)
        self.error.setVisible(bool(text))
        return not text and bool(self.image.text().strip() and self.sha256.text().strip())

    def _validate(self) -> None:
        self.create_button.setEnabled(self._ready() and (self.task is None or self.task.done()))

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Machine image", "", "Machine images (*.tar);;All files (*)")
        if path:
            self.image.setText(path)

    def create_machine(self) -> None:
        """Run init with the form's values (nothing when the form is not complete)."""
        if not self._ready():
            return
        name = self.name.text().strip()
        self.busy.show()
        self.task = self.monitor.run(f"Create machine {name}", self._create(name), [self.create_button])
        self.task.add_done_callback(lambda _: self.busy.hide())

    async def _create(self, name: str) -> None:
        await self.monitor.control.init(name, self.image.text().strip(), self.sha256.text().strip().lower(),
                                        cpus=self.cpus.value(), memory_mib=self.memory.value(),
                                        disk_gib=self.disk.value(), idle_timeout=self.idle.value())
        self.monitor.settings.machine_name = name
        self.accept()
