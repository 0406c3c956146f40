"""The tray's Machine submenu: the current Berth machine's status as its first (disabled) line, then Start,
Stop and Restart, each enabled when the machine's state allows it. Only shown when a machine exists."""

from __future__ import annotations

from functools import partial

from PySide6.QtWidgets import QMenu

from app.machines import MachineMonitor, MachineVerb, allowed


def add_machine_menu(menu: QMenu, monitor: MachineMonitor) -> QMenu | None:
    """Add the submenu for ``monitor.current`` to ``menu``; returns it (None without a machine)."""
    machine = monitor.current
    if machine is None:
        return None
    sub = menu.addMenu(f"Machine: {machine.name}")
    sub.addAction(f"● {machine.name} is {machine.status}").setEnabled(False)
    sub.addSeparator()
    for verb in MachineVerb:
        action = sub.addAction(verb.value.capitalize(), partial(monitor.act, verb, machine.name))
        action.setEnabled(allowed(machine, verb))
    return sub
