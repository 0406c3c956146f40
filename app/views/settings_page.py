"""The Settings page: engine mode, VM resources, engine address, start at login, open dashboard at start, theme,
notifications. Every change applies at once and persists (through :class:`app.settings.Settings`).

A bad engine address is refused inline (nothing is stored); a good one reconnects the session. Start at login
writes or removes the XDG autostart entry (Linux); elsewhere the installer sets it. The page follows the
settings' ``changed`` signal, so a reset elsewhere shows here and the autostart entry follows.
"""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app import autostart
from app.actions import ActionRunner
from app.engine_session import EngineSession
from app.settings import ENGINE_HOST, START_AT_LOGIN, EngineMode, Settings, ThemeChoice
from backend.api.host import HostError, find_host, parse_host

VM_NOTE = "VM mode runs the engine in the Berth machine: create it on the Engine page (or berth machine init)."
ERROR_STYLE = "color: #d23c3c;"


def _spin(low: int, high: int, suffix: str, step: int = 1) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setSuffix(suffix)
    box.setSingleStep(step)
    return box


class SettingsPage(QWidget):
    """The settings form. ``address_error`` shows why an address was refused; ``message`` the last outcome."""

    def __init__(self, settings: Settings, session: EngineSession, runner: ActionRunner,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings, self.session, self.runner = settings, session, runner
        limits = settings.limits

        self.mode = QComboBox()
        self.mode.addItem("Native (this computer)", EngineMode.NATIVE)
        self.mode.addItem("VM (the Berth machine)", EngineMode.VM)
        self.mode.setToolTip("Where the engine runs")
        self.vm_note = QLabel(VM_NOTE)
        self.cpus = _spin(limits.min_cpus, limits.max_cpus, " CPUs")
        self.memory = _spin(limits.min_memory_mib, limits.max_memory_mib, " MiB", 256)
        self.disk = _spin(limits.min_disk_gib, limits.max_disk_gib, " GiB", 8)
        for box, what in ((self.cpus, "CPUs"), (self.memory, "memory"), (self.disk, "disk size")):
            box.setToolTip(f"The VM's {what} (limited by this computer)")
        self.address = QLineEdit()
        self.address.setClearButtonEnabled(True)
        self.address.setToolTip("unix:///path/to.sock or tcp://host:port; empty finds the engine as the CLI does")
        self.apply_address = QPushButton("Apply")
        self.apply_address.setToolTip("Connect to this address")
        self.address_error = QLabel()
        self.address_error.setStyleSheet(ERROR_STYLE)
        self.address_error.setWordWrap(True)
        self.address_error.hide()
        address_row = QHBoxLayout()
        address_row.addWidget(self.address, 1)
        address_row.addWidget(self.apply_address)
        engine_box = QGroupBox("Engine")
        engine_form = QFormLayout(engine_box)
        engine_form.addRow("Mode:", self.mode)
        engine_form.addRow("", self.vm_note)
        engine_form.addRow("VM CPUs:", self.cpus)
        engine_form.addRow("VM memory:", self.memory)
        engine_form.addRow("VM disk:", self.disk)
        engine_form.addRow("Engine address:", address_row)
        engine_form.addRow("", self.address_error)

        self.start_at_login = QCheckBox("Start Berth when I log in")
        if not autostart.supported():
            self.start_at_login.setEnabled(False)
            self.start_at_login.setToolTip(autostart.INSTALLER_NOTE)
        self.open_dashboard = QCheckBox("Open the dashboard when Berth starts")
        self.open_dashboard.setToolTip("Off: Berth starts in the tray")
        self.theme = QComboBox()
        for choice in ThemeChoice:
            self.theme.addItem(choice.value.capitalize(), choice)
        self.theme.setToolTip("System follows the platform's light or dark mode")
        self.notifications = QCheckBox("Notify me when a container dies, runs out of memory or turns unhealthy")
        app_box = QGroupBox("App")
        app_form = QFormLayout(app_box)
        app_form.addRow(self.start_at_login)
        app_form.addRow(self.open_dashboard)
        app_form.addRow("Theme:", self.theme)
        app_form.addRow(self.notifications)
        self.message = QLabel()
        self.message.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<b>Settings</b>"))
        layout.addWidget(engine_box)
        layout.addWidget(app_box)
        layout.addWidget(self.message)
        layout.addStretch(1)
        self._load()

        self.mode.currentIndexChanged.connect(self._mode_changed)
        self.cpus.valueChanged.connect(lambda value: self._store("vm_cpus", value))
        self.memory.valueChanged.connect(lambda value: self._store("vm_memory_mib", value))
        self.disk.valueChanged.connect(lambda value: self._store("vm_disk_gib", value))
        self.apply_address.clicked.connect(self.apply_engine_address)
        self.address.returnPressed.connect(self.apply_engine_address)
        self.start_at_login.toggled.connect(self._start_at_login_toggled)
        self.open_dashboard.toggled.connect(lambda on: self._store("open_dashboard", on))
        self.theme.currentIndexChanged.connect(lambda _: self._store("theme", self.theme.currentData()))
        self.notifications.toggled.connect(lambda on: self._store("notifications", on))
        settings.changed.connect(self._setting_changed)

    def apply_engine_address(self) -> bool:
        """Store the address field (empty: the default) if it is valid, which reconnects; else show why
        inline. Returns whether it was stored."""
        try:
            self.settings.engine_host = self.address.text()
        except HostError as exc:
            self.address_error.setText(str(exc))
            self.address_error.show()
            return False
        self.address_error.hide()
        return True

    def _load(self, with_address: bool = True) -> None:
        """Show the stored settings (without emitting the widgets' change signals); ``with_address`` false
        leaves the address field as the user is typing it."""
        settings = self.settings
        widgets = (self.mode, self.cpus, self.memory, self.disk, self.address, self.start_at_login,
                   self.open_dashboard, self.theme, self.notifications)
        blocked = [w.blockSignals(True) for w in widgets]
        try:
            self.mode.setCurrentIndex(self.mode.findData(settings.engine_mode))
            self.cpus.setValue(settings.vm_cpus)
            self.memory.setValue(settings.vm_memory_mib)
            self.disk.setValue(settings.vm_disk_gib)
            if with_address:
                self.address.setText(settings.engine_host)
            self.address.setPlaceholderText(f"default: {find_host()}")
            self.start_at_login.setChecked(settings.start_at_login)
            self.open_dashboard.setChecked(settings.open_dashboard)
            self.theme.setCurrentIndex(self.theme.findData(settings.theme))
            self.notifications.setChecked(settings.notifications)
        finally:
            for widget, was in zip(widgets, blocked, strict=True):
                widget.blockSignals(was)
        self._show_vm(settings.engine_mode)

    def _show_vm(self, mode: EngineMode) -> None:
        vm = mode is EngineMode.VM
        self.vm_note.setVisible(vm)
        for box in (self.cpus, self.memory, self.disk):
            box.setEnabled(vm)

    def _store(self, name: str, value: object) -> None:
        try:
            setattr(self.settings, name, value)
        except ValueError as exc:
            self.message.setText(str(exc))

    def _mode_changed(self, _index: int) -> None:
        mode = self.mode.currentData()
        assert isinstance(mode, EngineMode)
        self.settings.engine_mode = mode
        self._show_vm(mode)

    def _start_at_login_toggled(self, enabled: bool) -> None:
        try:
            path = autostart.set_start_at_login(enabled)
        except OSError as exc:
            self.message.setText(f"Start at login: {exc.strerror or exc}")
            with QSignalBlocker(self.start_at_login):
                self.start_at_login.setChecked(not enabled)
            return
        self.settings.start_at_login = enabled
        self.message.setText(f"Start at login {'on' if enabled else 'off'} ({path})")

    def _setting_changed(self, key: str) -> None:
        if key == ENGINE_HOST:
            self._reconnect()
        elif key == START_AT_LOGIN and autostart.supported():
            wanted = self.settings.start_at_login
            if autostart.entry_path().exists() != wanted:
                try:
                    autostart.set_start_at_login(wanted)
                except OSError as exc:
                    self.message.setText(f"Start at login: {exc.strerror or exc}")
        self._load(with_address=key == ENGINE_HOST)

    def _reconnect(self) -> None:
        host = self.settings.engine_host or find_host()
        try:
            address = parse_host(host)
        except HostError as exc:
            self.message.setText(str(exc))
            return
        if address != self.session.client.address:
            self.runner.run(f"Connect to {host}", self.session.reconnect(host))
            self.message.setText(f"Connecting to {host}{'' if self.settings.engine_host else ' (default)'}")

