"""The Engine page's VM mode section: the Berth machine (issue 9) and its controls.

Without a machine it says "Not configured" and offers Create machine…. With machines it shows the one the
settings name (a combo chooses when there are several): a state chip coloured as the containers' dots,
resources (editable only while stopped), accelerator, last boot time, published ports, the engine socket
(with Copy), the resource saver's idle time (editable at any time), the error of a failed machine, and
Start / Stop / Restart / Serial log / Remove. It follows :class:`app.machines.MachineMonitor`, which reads the
machines again whenever their files change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from PySide6.QtGui import QFontDatabase, QGuiApplication, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from shiboken6 import isValid

from app.dialogs.machine_create import ERROR_STYLE, MachineCreateDialog, idle_spin, spin
from app.machines import MachineMonitor, MachineVerb, allowed, state_colour
from app.views.table_page import ask
from backend.api.machines import MachineInfo, MachineState

VM_NOT_CONFIGURED = ("Not configured: the engine runs on this computer. VM mode needs the Berth machine "
                     "(berth machine init).")


class SerialLogDialog(QDialog):
    """The machine's serial console (``berth machine logs``), read again with Refresh."""

    def __init__(self, monitor: MachineMonitor, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Serial log of {name} — Berth")
        self.resize(800, 500)
        self.monitor, self.name = monitor, name
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text, 1)
        layout.addLayout(buttons)
        self.refresh()

    def refresh(self) -> None:
        """Read the log again and show its end."""
        self.monitor.runner.run(f"Serial log of {self.name}", self._load(), [self.refresh_button])

    async def _load(self) -> None:
        text = await self.monitor.control.logs(self.name)
        if isValid(self.text):
            self.text.setPlainText(text or "(the machine has not booted yet)")
            self.text.verticalScrollBar().setValue(self.text.verticalScrollBar().maximum())


class MachinePanel(QGroupBox):
    """The VM mode box. ``empty`` (with ``create_button``) shows without machines, ``details`` with them;
    ``chip``, ``facts[name]``, ``socket`` (``copy_socket``), ``error`` show the current machine;
    ``cpus``/``memory``/``disk`` with ``apply_resources`` change it while stopped, ``idle`` with ``apply_idle``
    at any time; ``buttons[verb]``, ``log_button``, ``remove_button`` act. ``confirm`` asks before Remove
    (replaceable)."""

    def __init__(self, monitor: MachineMonitor, parent: QWidget | None = None) -> None:
        super().__init__("VM mode", parent)
        self.monitor = monitor
        self.confirm: Callable[[str], bool] = lambda question: ask(self, question)
        self.dialog: QDialog | None = None

        self.empty = QWidget()
        self.vm_status = QLabel(VM_NOT_CONFIGURED)
        self.vm_status.setWordWrap(True)
        self.create_button = QPushButton("Create machine…")
        self.create_button.setToolTip("Create the Berth machine from a base image")
        self.create_button.clicked.connect(self.open_create)
        empty_layout = QHBoxLayout(self.empty)
        empty_layout.setContentsMargins(0, 0, 0, 0)
        empty_layout.addWidget(self.vm_status, 1)
        empty_layout.addWidget(self.create_button)

        self.details = QWidget()
        self.choice = QComboBox()
        self.choice.setToolTip("The machine VM mode uses")
        self.choice.activated.connect(lambda _: setattr(monitor.settings, "machine_name", self.choice.currentText()))
        self.chip = QLabel()
        self.buttons: dict[MachineVerb, QPushButton] = {}
        header = QHBoxLayout()
        header.addWidget(self.choice)
        header.addWidget(self.chip)
        header.addStretch(1)
        for verb in MachineVerb:
            button = QPushButton(verb.value.capitalize())
            button.clicked.connect(lambda _=False, v=verb: self.act(v))
            header.addWidget(button)
            self.buttons[verb] = button
        self.log_button = QPushButton("Serial log")
        self.log_button.setToolTip("The machine's serial console")
        self.log_button.clicked.connect(self.open_log)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove the machine and its disk (stopped first)")
        self.remove_button.clicked.connect(self.remove)
        header.addWidget(self.log_button)
        header.addWidget(self.remove_button)

        limits = monitor.settings.limits
        self.cpus = spin(limits.min_cpus, limits.max_cpus, limits.min_cpus, " CPUs")
        self.memory = spin(limits.min_memory_mib, limits.max_memory_mib, limits.min_memory_mib, " MiB", 256)
        self.disk = spin(limits.min_disk_gib, limits.max_disk_gib, limits.min_disk_gib, " GiB", 8)
        self.apply_resources = QPushButton("Apply")
        self.apply_resources.setToolTip("Change the resources (only while the machine is stopped; the disk only grows)")
        self.apply_resources.clicked.connect(self.set_resources)
        resources = QHBoxLayout()
        for widget in (self.cpus, self.memory, self.disk, self.apply_resources):
            resources.addWidget(widget)
        resources.addStretch(1)
        self.idle = idle_spin(0)
        self.apply_idle = QPushButton("Apply")
        self.apply_idle.setToolTip("Change the idle time (at any time)")
        self.apply_idle.clicked.connect(self.set_idle)
        idle = QHBoxLayout()
        idle.addWidget(self.idle)
        idle.addWidget(self.apply_idle)
        idle.addStretch(1)
        self.socket = QLabel()
        self.copy_socket = QPushButton("Copy")
        self.copy_socket.setToolTip("Copy the engine's address (use it as DOCKER_HOST or -H)")
        self.copy_socket.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.socket.text()))
        socket_row = QHBoxLayout()
        socket_row.addWidget(self.socket, 1)
        socket_row.addWidget(self.copy_socket)
        self.facts = {name: QLabel() for name in ("Accelerator", "Last boot", "Ports")}
        self.error = QLabel()
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.setWordWrap(True)
        self.form = QFormLayout()
        self.form.addRow("Resources:", resources)
        for name, label in self.facts.items():
            label.setWordWrap(True)
            self.form.addRow(f"{name}:", label)
        self.form.addRow("Engine socket:", socket_row)
        self.form.addRow("Resource saver:", idle)
        self.form.addRow("Error:", self.error)
        details_layout = QVBoxLayout(self.details)
        details_layout.setContentsMargins(0, 0, 0, 0)
        details_layout.addLayout(header)
        details_layout.addLayout(self.form)

        layout = QVBoxLayout(self)
        layout.addWidget(self.empty)
        layout.addWidget(self.details)
        monitor.changed.connect(self.show_machine)
        self.show_machine()

    @property
    def machine(self) -> MachineInfo | None:
        return self.monitor.current

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.monitor.start()

    def show_machine(self) -> None:
        """Show the current machine (or the empty state)."""
        machine, machines = self.machine, self.monitor.machines
        self.empty.setVisible(machine is None)
        self.details.setVisible(machine is not None)
        if machine is None:
            return
        self.choice.clear()
        self.choice.addItems([m.name for m in machines])
        self.choice.setCurrentText(machine.name)
        self.choice.setVisible(len(machines) > 1)
        self.chip.setText(f"<span style='color: {state_colour(machine).value}'>●</span> <b>{machine.name}</b> is "
                          f"{machine.status}")
        config = machine.config
        for box, value in ((self.cpus, config.cpus), (self.memory, config.memory_mib), (self.disk, config.disk_gib)):
            box.setMaximum(max(box.maximum(), value))
            box.setValue(value)
        self.disk.setMinimum(config.disk_gib)  # the disk only grows
        self.idle.setValue(config.idle_timeout)
        self.facts["Accelerator"].setText(machine.accel or config.accel or "chosen at the first start")
        self.facts["Last boot"].setText(f"ready in {machine.boot_seconds:.1f} s" if machine.boot_seconds else "—")
        self.facts["Ports"].setText(", ".join(machine.ports) or "none published")
        self.socket.setText(machine.socket)
        self.error.setText(machine.error)
        self.form.setRowVisible(self.error, machine.state is MachineState.ERROR and bool(machine.error))
        self._enable(machine)

    def _enable(self, machine: MachineInfo | None = None) -> None:
        machine = machine or self.machine
        if machine is None:
            return
        for verb, button in self.buttons.items():
            button.setEnabled(allowed(machine, verb))
        stopped = machine.state is MachineState.STOPPED
        for widget in (self.cpus, self.memory, self.disk, self.apply_resources):
            widget.setEnabled(stopped)

    def act(self, verb: MachineVerb) -> None:
        """Start, stop or restart the current machine."""
        if (machine := self.machine) is not None:
            self._after(self.monitor.act(verb, machine.name, [*self.buttons.values(), self.remove_button]))

    def set_resources(self) -> None:
        """Store the CPUs, memory and disk that changed (the machine must be stopped)."""
        if (machine := self.machine) is None:
            return
        config = machine.config
        changes = {key: value for key, value, old in (("cpus", self.cpus.value(), config.cpus),
                                                      ("memory_mib", self.memory.value(), config.memory_mib),
                                                      ("disk_gib", self.disk.value(), config.disk_gib))
                   if value != old}
        if changes:
            self._after(self.monitor.run(f"Change the resources of {machine.name}",
                                         self.monitor.control.set(machine.name, **changes),
                                         [self.apply_resources]))

    def set_idle(self) -> None:
        """Store the resource saver's idle time."""
        if (machine := self.machine) is not None:
            self.monitor.run(f"Change the idle time of {machine.name}",
                             self.monitor.control.set(machine.name, idle_timeout=self.idle.value()), [self.apply_idle])

    def remove(self) -> None:
        """Remove the current machine and its disk, after confirmation."""
        machine = self.machine
        if machine is not None and self.confirm(f"Remove the machine {machine.name}? Its disk and every container, "
                                                f"image and volume in it are lost."):
            self._after(self.monitor.run(f"Remove machine {machine.name}", self.monitor.control.rm(machine.name),
                                         [*self.buttons.values(), self.remove_button]))

    def open_create(self) -> None:
        """Open the Create machine dialog."""
        self.dialog = MachineCreateDialog(self.monitor, self)
        self.dialog.show()

    def open_log(self) -> None:
        """Open the serial log of the current machine."""
        if (machine := self.machine) is not None:
            self.dialog = SerialLogDialog(self.monitor, machine.name, self)
            self.dialog.show()

    def _after(self, task: asyncio.Task[None]) -> None:
        """Per-state enabling again once ``task`` ended (the runner re-enables what it disabled)."""
        task.add_done_callback(lambda _: self._enable() if isValid(self) else None)
