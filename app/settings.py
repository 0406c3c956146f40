"""The app's settings, kept in QSettings: typed properties with defaults and validation.

Every setter validates (ValueError, or HostError for an engine address, with nothing stored) and emits
``changed(key)`` so what the setting drives (theme, tray, connection) applies at once. Getters never raise:
a value that is missing or no longer valid (edited file, smaller host) reads as its default or is clamped.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TypeVar

from PySide6.QtCore import QByteArray, QObject, QSettings, Signal

from backend.api.host import HostError, parse_host

GEOMETRY = "window/geometry"
PAGE = "window/page"
TABLES = "window/tables/"  # + the page's name: its table header's state (column widths, sort column and order)
DETAIL_TAB = "window/detail_tab"
NOTIFICATIONS = "notifications/enabled"
ENGINE_MODE = "engine/mode"
ENGINE_HOST = "engine/host"
NATIVE_HOST = "engine/native_host"  # the address VM mode replaced, restored when going back to native
VM_MACHINE = "vm/machine"
VM_CPUS = "vm/cpus"
VM_MEMORY = "vm/memory_mib"
VM_DISK = "vm/disk_gib"
START_AT_LOGIN = "app/start_at_login"
OPEN_DASHBOARD = "app/open_dashboard"
THEME = "app/theme"
EXPORTED = (ENGINE_MODE, ENGINE_HOST, VM_CPUS, VM_MEMORY, VM_DISK, START_AT_LOGIN, OPEN_DASHBOARD, THEME,
            NOTIFICATIONS)
E = TypeVar("E", bound=Enum)
MACHINE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class EngineMode(Enum):
    """Where the engine runs: here (Linux), or in the Berth machine (a VM; issue 9)."""

    NATIVE = "native"
    VM = "vm"


class ThemeChoice(Enum):
    """The app's colours: the platform's scheme, or always light or dark."""

    SYSTEM = "system"
    LIGHT = "light"
    DARK = "dark"


@dataclass(frozen=True)
class VmLimits:
    """The ranges the VM's resources may take on this host (inclusive) and their defaults."""

    max_cpus: int
    max_memory_mib: int
    max_disk_gib: int
    min_cpus: int = 1
    min_memory_mib: int = 512
    min_disk_gib: int = 4

    @property
    def default_cpus(self) -> int:
        return max(self.min_cpus, self.max_cpus // 2)

    @property
    def default_memory_mib(self) -> int:
        return max(self.min_memory_mib, min(4096, self.max_memory_mib // 2))

    @property
    def default_disk_gib(self) -> int:
        return max(self.min_disk_gib, min(64, self.max_disk_gib))


def host_limits(home: Path | None = None) -> VmLimits:
    """The VM limits of this host: its CPUs, its total memory and the size of the disk holding ``home``."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 8 << 30
    disk = shutil.disk_usage(home or Path.home()).total
    return VmLimits(max_cpus=os.cpu_count() or 1, max_memory_mib=max(512, memory >> 20),
                    max_disk_gib=max(4, disk >> 30))


class Settings(QObject):
    """Typed access to a QSettings store (the user's, or a file in tests). Emits ``changed(key)`` after a
    setter stored a value, and for every exported key after :meth:`reset`."""

    changed = Signal(str)

    def __init__(self, store: QSettings, limits: VmLimits | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.limits = limits or host_limits()

    def _set(self, key: str, value: object) -> None:
        self.store.setValue(key, value)
        self.store.sync()
        self.changed.emit(key)

    def _bool(self, key: str, default: bool) -> bool:
        value = str(self.store.value(key, default)).lower()
        return value == "true" if value in ("true", "false") else default

    def _int(self, key: str, default: int, low: int, high: int) -> int:
        try:
            value = int(str(self.store.value(key, default)))
        except ValueError:
            return default
        return min(max(value, low), high)

    def _enum(self, key: str, kind: type[E], default: E) -> E:
        try:
            return kind(str(self.store.value(key, default.value)))
        except ValueError:
            return default

    def _checked_int(self, key: str, value: int, low: int, high: int, what: str) -> None:
        if not low <= value <= high:
            raise ValueError(f"{what} must be between {low} and {high} on this computer")
        self._set(key, value)

    @property
    def geometry(self) -> QByteArray | None:
        value = self.store.value(GEOMETRY)
        return value if isinstance(value, QByteArray) else None

    @geometry.setter
    def geometry(self, value: QByteArray) -> None:
        self.store.setValue(GEOMETRY, value)

    @property
    def page(self) -> int:
        value = self.store.value(PAGE, 0)
        return int(value) if isinstance(value, (int, str)) and str(value).isdigit() else 0

    @page.setter
    def page(self, value: int) -> None:
        self.store.setValue(PAGE, value)

    def table_state(self, page: str) -> QByteArray | None:
        """The saved header state of ``page``'s table (QHeaderView.saveState), or None."""
        value = self.store.value(TABLES + page)
        return value if isinstance(value, QByteArray) else None

    def set_table_state(self, page: str, state: QByteArray) -> None:
        self.store.setValue(TABLES + page, state)

    @property
    def detail_tab(self) -> int:
        """The container detail view's last tab (0-based; 0 when unset)."""
        return self._int(DETAIL_TAB, 0, 0, 99)

    @detail_tab.setter
    def detail_tab(self, value: int) -> None:
        self.store.setValue(DETAIL_TAB, value)

    @property
    def notifications(self) -> bool:
        """Whether the tray shows notifications (default on)."""
        return self._bool(NOTIFICATIONS, True)

    @notifications.setter
    def notifications(self, value: bool) -> None:
        self._set(NOTIFICATIONS, value)

    @property
    def engine_mode(self) -> EngineMode:
        """Native (default) or VM."""
        return self._enum(ENGINE_MODE, EngineMode, EngineMode.NATIVE)

    @engine_mode.setter
    def engine_mode(self, value: EngineMode) -> None:
        self._set(ENGINE_MODE, value.value)

    @property
    def engine_host(self) -> str:
        """The engine address the user chose; "" (the default) finds it as the CLI does."""
        value = str(self.store.value(ENGINE_HOST, "")).strip()
        if value:
            try:
                parse_host(value)
            except HostError:
                return ""
        return value

    @engine_host.setter
    def engine_host(self, value: str) -> None:
        """Store ``value`` ("" for the default). Raises HostError when it is not a usable address."""
        value = value.strip()
        if value:
            parse_host(value)
        self._set(ENGINE_HOST, value)

    @property
    def native_host(self) -> str:
        """The engine address in use before VM mode pointed the app at the machine ("" for the default)."""
        return str(self.store.value(NATIVE_HOST, "")).strip()

    @native_host.setter
    def native_host(self, value: str) -> None:
        self._set(NATIVE_HOST, value)

    @property
    def machine_name(self) -> str:
        """The Berth machine VM mode uses (default ``default``)."""
        value = str(self.store.value(VM_MACHINE, "default"))
        return value if MACHINE_NAME.match(value) else "default"

    @machine_name.setter
    def machine_name(self, value: str) -> None:
        """Raises ValueError for a name ``berth machine`` would refuse."""
        if not MACHINE_NAME.match(value):
            raise ValueError(f"invalid machine name {value!r}: use lower-case letters, digits, '_', '.', '-'")
        self._set(VM_MACHINE, value)

    @property
    def vm_cpus(self) -> int:
        limits = self.limits
        return self._int(VM_CPUS, limits.default_cpus, limits.min_cpus, limits.max_cpus)

    @vm_cpus.setter
    def vm_cpus(self, value: int) -> None:
        """Raises ValueError outside the host's range."""
        self._checked_int(VM_CPUS, value, self.limits.min_cpus, self.limits.max_cpus, "VM CPUs")

    @property
    def vm_memory_mib(self) -> int:
        limits = self.limits
        return self._int(VM_MEMORY, limits.default_memory_mib, limits.min_memory_mib, limits.max_memory_mib)

    @vm_memory_mib.setter
    def vm_memory_mib(self, value: int) -> None:
        """Raises ValueError outside the host's range."""
        self._checked_int(VM_MEMORY, value, self.limits.min_memory_mib, self.limits.max_memory_mib, "VM memory (MiB)")

    @property
    def vm_disk_gib(self) -> int:
        limits = self.limits
        return self._int(VM_DISK, limits.default_disk_gib, limits.min_disk_gib, limits.max_disk_gib)

    @vm_disk_gib.setter
    def vm_disk_gib(self, value: int) -> None:
        """Raises ValueError outside the host's range."""
        self._checked_int(VM_DISK, value, self.limits.min_disk_gib, self.limits.max_disk_gib, "VM disk (GiB)")

    @property
    def start_at_login(self) -> bool:
        """Whether the app starts at login (default off; the autostart entry is the page's business)."""
        return self._bool(START_AT_LOGIN, False)

    @start_at_login.setter
    def start_at_login(self, value: bool) -> None:
        self._set(START_AT_LOGIN, value)

    @property
    def open_dashboard(self) -> bool:
        """Whether the window opens when the app starts (default on; off starts in the tray)."""
        return self._bool(OPEN_DASHBOARD, True)

    @open_dashboard.setter
    def open_dashboard(self, value: bool) -> None:
        self._set(OPEN_DASHBOARD, value)

    @property
    def theme(self) -> ThemeChoice:
        """System (default), Light or Dark."""
        return self._enum(THEME, ThemeChoice, ThemeChoice.SYSTEM)

    @theme.setter
    def theme(self, value: ThemeChoice) -> None:
        self._set(THEME, value.value)

    def exported(self) -> dict[str, str]:
        """The user's choices as text (what a diagnostics bundle carries: no window state, no secrets)."""
        values: dict[str, object] = {
            ENGINE_MODE: self.engine_mode.value, ENGINE_HOST: self.engine_host, VM_CPUS: self.vm_cpus,
            VM_MEMORY: self.vm_memory_mib, VM_DISK: self.vm_disk_gib, START_AT_LOGIN: self.start_at_login,
            OPEN_DASHBOARD: self.open_dashboard, THEME: self.theme.value, NOTIFICATIONS: self.notifications}
        return {key: str(values[key]).lower() if isinstance(values[key], bool) else str(values[key])
                for key in EXPORTED}

    def reset(self) -> int:
        """Clear every setting (back to the defaults); returns how many were set. Emits ``changed`` for each
        exported key."""
        count = len(self.store.allKeys())
        self.store.clear()
        self.store.sync()
        for key in EXPORTED:
            self.changed.emit(key)
        return count
