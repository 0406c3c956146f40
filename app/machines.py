"""The Berth machines as the app knows them: one :class:`MachineMonitor` shared by the Engine page's VM section
and the tray.

The list comes from ``berth machine ls`` (through :class:`backend.api.machines.MachineControl`) and is read
again when something changes on disk: a QFileSystemWatcher follows the machine home and each machine's
directory (``machine.json`` is replaced by a rename on every change of state), so nothing polls the CLI.
While the home does not exist yet, a stat every 2 s waits for it. The monitor also keeps the engine address
on the machine's socket while the engine mode is VM, and restores the earlier address when it goes back to
native.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from contextlib import suppress
from enum import Enum
from typing import Any

from PySide6.QtCore import QFileSystemWatcher, QObject, QTimer, Signal
from PySide6.QtWidgets import QWidget

from app.actions import ActionRunner
from app.formatting import StateColour
from app.settings import ENGINE_MODE, VM_MACHINE, EngineMode, Settings
from backend.api.machines import MachineControl, MachineInfo, MachineState

HOME_POLL_MS = 2000
DEBOUNCE_MS = 100


class MachineVerb(Enum):
    START = "start"
    STOP = "stop"
    RESTART = "restart"


STATE_COLOURS = {MachineState.RUNNING: StateColour.GREEN, MachineState.STARTING: StateColour.BLUE,
                 MachineState.STOPPING: StateColour.BLUE, MachineState.STOPPED: StateColour.GREY,
                 MachineState.ERROR: StateColour.RED}


def state_colour(machine: MachineInfo) -> StateColour:
    """The chip colour, as the containers' dots: green running, amber resting (paused), blue starting or
    stopping, grey stopped, red error."""
    return StateColour.AMBER if machine.resting and machine.running else STATE_COLOURS[machine.state]


def allowed(machine: MachineInfo, verb: MachineVerb) -> bool:
    """Whether ``verb`` makes sense in the machine's state (start a stopped or failed one, stop a running or
    starting one, restart a running one)."""
    if verb is MachineVerb.START:
        return machine.state in (MachineState.STOPPED, MachineState.ERROR)
    if verb is MachineVerb.STOP:
        return machine.state in (MachineState.RUNNING, MachineState.STARTING)
    return machine.state is MachineState.RUNNING


class MachineMonitor(QObject):
    """``machines`` (by name) kept current; ``changed`` after each read. ``current`` is the machine the
    settings name, else the first one. Every command runs through the ActionRunner."""

    changed = Signal()

    def __init__(self, control: MachineControl, runner: ActionRunner, settings: Settings,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.control, self.runner, self.settings = control, runner, settings
        self.machines: list[MachineInfo] = []
        self.loaded = False
        self._started = False
        self._stopped = False
        self._again = False
        self._loading: asyncio.Task[None] | None = None
        self._debounce = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._debounce.timeout.connect(self.refresh)
        self._watcher = QFileSystemWatcher(self)
        self._watcher.directoryChanged.connect(lambda _: self._debounce.start())
        self._home_poll = QTimer(self, interval=HOME_POLL_MS)
        self._home_poll.timeout.connect(self._check_home)
        settings.changed.connect(self._setting_changed)

    @property
    def current(self) -> MachineInfo | None:
        by_name = {m.name: m for m in self.machines}
        return by_name.get(self.settings.machine_name) or (self.machines[0] if self.machines else None)

    def start(self) -> None:
        """Read the machines and follow the disk from now on (again: nothing)."""
        if not self._started:
            self._started = True
            self._check_home()

    async def stop(self) -> None:
        """Stop following the disk and end a read under way (the app is closing)."""
        self._stopped = True
        self._home_poll.stop()
        self._debounce.stop()
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
            with suppress(asyncio.CancelledError):
                await self._loading

    def refresh(self) -> None:
        """Read the machines again (once more after the read under way, if one is)."""
        if self._stopped:
            return
        if self._loading is not None and not self._loading.done():
            self._again = True
            return
        self._loading = self.runner.run("Read the machines", self._load())

    def act(self, verb: MachineVerb, name: str, controls: list[QWidget] | None = None) -> asyncio.Task[None]:
        """Start, stop or restart machine ``name``."""
        call = {MachineVerb.START: self.control.start, MachineVerb.STOP: self.control.stop,
                MachineVerb.RESTART: self.control.restart}[verb]
        return self.run(f"{verb.value.capitalize()} machine {name}", call(name), controls or [])

    def run(self, label: str, coro: Coroutine[Any, Any, object], controls: list[QWidget]) -> asyncio.Task[None]:
        """Run a machine command through the runner, then read the machines again."""
        async def then_refresh() -> None:
            try:
                await coro
            finally:
                self.refresh()

        return self.runner.run(label, then_refresh(), controls)

    def _check_home(self) -> None:
        if not self.control.home.is_dir():
            self._home_poll.start()
            return
        self._home_poll.stop()
        self.refresh()

    async def _load(self) -> None:
        try:
            self.machines = sorted(await self.control.ls(), key=lambda m: m.name)
            self.loaded = True
            self._watch()
            self.changed.emit()
            self._follow_engine_mode()
        finally:
            if self._again and not self._stopped:
                self._again = False
                self._debounce.start()

    def _watch(self) -> None:
        wanted = {str(self.control.home), *(m.dir for m in self.machines)}
        watched = set(self._watcher.directories())
        if watched - wanted:
            self._watcher.removePaths(sorted(watched - wanted))
        if wanted - watched:
            self._watcher.addPaths(sorted(wanted - watched))

    def _setting_changed(self, key: str) -> None:
        if key == VM_MACHINE:
            self.changed.emit()
        if key in (ENGINE_MODE, VM_MACHINE) and self.loaded:
            self._follow_engine_mode()

    def _follow_engine_mode(self) -> None:
        """VM mode: the engine address is the current machine's socket (the address it replaces kept);
        native mode: the kept address comes back."""
        settings, machine = self.settings, self.current
        on_machine = settings.engine_host.startswith(f"unix://{self.control.home}/")
        if settings.engine_mode is EngineMode.VM:
            if machine is not None and settings.engine_host != machine.socket:
                if not on_machine:
                    settings.native_host = settings.engine_host
                settings.engine_host = machine.socket
        elif on_machine:
            settings.engine_host = settings.native_host
