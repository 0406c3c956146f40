"""The Engine page: state with Start/Stop/Restart, facts from ``/version`` and ``/info``, disk usage from
``/system/df`` with Prune per kind and Prune all (each confirmed), and the VM mode section
(:mod:`app.views.machine_panel`, whose machines ``machines`` follows).

Facts and disk usage load on each (re)connection, when the page is shown, on Refresh and after a prune;
never per event, so a burst of events costs nothing here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.actions import ActionRunner
from app.engine_control import EngineCommand, control_engine
from app.engine_session import EngineSession, EngineState
from app.formatting import size
from app.machines import MachineMonitor
from app.settings import Settings
from app.views.machine_panel import MachinePanel
from app.views.table_page import ask
from backend.api.machines import MachineControl


class UsageKind(Enum):
    """The kinds ``/system/df`` reports, in the page's order."""

    IMAGES = "Images"
    CONTAINERS = "Containers"
    VOLUMES = "Volumes"
    BUILD_CACHE = "Build cache"


PRUNE_QUESTIONS = {
    UsageKind.IMAGES: "Remove dangling images (untagged and not used by any container)?",
    UsageKind.CONTAINERS: "Remove all stopped containers?",
    UsageKind.VOLUMES: "Remove every volume no container uses? The data in them is lost.",
    UsageKind.BUILD_CACHE: "Remove the build cache?",
}
PRUNE_ALL_QUESTION = ("Remove stopped containers, unused networks, dangling images and the build cache? "
                      "Volumes are kept: prune them on their own.")


@dataclass(frozen=True)
class Usage:
    """One line of disk usage: how many, how many in use, their size and what a prune could reclaim (bytes)."""

    kind: UsageKind
    count: int
    active: int
    size: int
    reclaimable: int


def _n(value: object) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def _rows(doc: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    rows = doc.get(key)
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def disk_usage(doc: Mapping[str, Any]) -> list[Usage]:
    """The ``/system/df`` document as one :class:`Usage` per kind, counted as ``docker system df`` does (images:
    the layers' total, reclaimable = what no container's image holds alone)."""
    images = _rows(doc, "Images")
    used = [i for i in images if _n(i.get("Containers"))]
    images_size = _n(doc.get("LayersSize"))
    images_used = sum(_n(i.get("Size")) - _n(i.get("SharedSize")) for i in used)
    containers = _rows(doc, "Containers")
    running = [c for c in containers if c.get("State") == "running"]
    volumes = [u if isinstance(u := v.get("UsageData"), dict) else {} for v in _rows(doc, "Volumes")]
    caches = _rows(doc, "BuildCache")
    return [
        Usage(UsageKind.IMAGES, len(images), len(used), images_size, max(0, images_size - images_used)),
        Usage(UsageKind.CONTAINERS, len(containers), len(running), sum(_n(c.get("SizeRw")) for c in containers),
              sum(_n(c.get("SizeRw")) for c in containers if c not in running)),
        Usage(UsageKind.VOLUMES, len(volumes), sum(1 for u in volumes if _n(u.get("RefCount"))),
              sum(_n(u.get("Size")) for u in volumes),
              sum(_n(u.get("Size")) for u in volumes if not _n(u.get("RefCount")))),
        Usage(UsageKind.BUILD_CACHE, len(caches), sum(1 for c in caches if c.get("InUse")),
              sum(_n(c.get("Size")) for c in caches),
              sum(_n(c.get("Size")) for c in caches if not c.get("InUse") and not c.get("Shared"))),
    ]


class EnginePage(QWidget):
    """Shows the session's state and facts; its buttons run systemctl through :mod:`app.engine_control` and
    prunes through the client. ``facts`` are the fact labels by name, ``usage_labels[kind]`` the count, size and
    reclaimable labels, ``prune_buttons[kind]`` and ``prune_all`` the prune buttons, ``result`` the last prune's
    outcome; ``confirm`` asks before a prune (replaceable)."""

    def __init__(self, session: EngineSession, runner: ActionRunner, settings: Settings,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session, self.runner = session, runner
        self.confirm: Callable[[str], bool] = lambda question: ask(self, question)
        self.state = QLabel()
        buttons = QHBoxLayout()
        self.controls: list[QPushButton] = []
        for command in EngineCommand:
            button = QPushButton(command.value.capitalize())
            button.setToolTip(f"{command.value.capitalize()} the engine (systemd unit berthd)")
            button.clicked.connect(lambda _=False, c=command: self.control(c))
            buttons.addWidget(button)
            self.controls.append(button)
        buttons.addStretch(1)

        facts_box = QGroupBox("Engine")
        facts_form = QFormLayout(facts_box)
        self.facts: dict[str, QLabel] = {}
        for name in ("Version", "API", "Runtime", "Cgroups", "Storage", "Host", "Objects"):
            label = QLabel("—")
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            facts_form.addRow(f"{name}:", label)
            self.facts[name] = label

        usage_box = QGroupBox("Disk usage")
        grid = QGridLayout(usage_box)
        for column, title in enumerate(("", "Count", "In use", "Size", "Reclaimable")):
            grid.addWidget(QLabel(f"<b>{title}</b>"), 0, column)
        self.usage_labels: dict[UsageKind, list[QLabel]] = {}
        self.prune_buttons: dict[UsageKind, QPushButton] = {}
        for row, kind in enumerate(UsageKind, start=1):
            grid.addWidget(QLabel(kind.value), row, 0)
            self.usage_labels[kind] = [QLabel("—") for _ in range(4)]
            for column, label in enumerate(self.usage_labels[kind], start=1):
                grid.addWidget(label, row, column)
            button = QPushButton("Prune")
            button.setToolTip(PRUNE_QUESTIONS[kind].removesuffix("?"))
            button.clicked.connect(lambda _=False, k=kind: self.prune(k))
            grid.addWidget(button, row, 5)
            self.prune_buttons[kind] = button
        refresh = QPushButton("Refresh")
        refresh.setToolTip("Read the disk usage again")
        refresh.clicked.connect(self.reload)
        self.prune_all = QPushButton("Prune all")
        self.prune_all.setToolTip(PRUNE_ALL_QUESTION.split("?")[0])
        self.prune_all.clicked.connect(self.prune_everything)
        self.result = QLabel()
        actions = QHBoxLayout()
        actions.addWidget(refresh)
        actions.addWidget(self.prune_all)
        actions.addWidget(self.result, 1)
        grid.addLayout(actions, len(UsageKind) + 1, 0, 1, 6)

        self.machines = MachineMonitor(MachineControl(), runner, settings)
        self.machine_panel = MachinePanel(self.machines)

        content = QWidget()
        scroll = QScrollArea()  # the page scrolls rather than setting the window's minimum height
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        layout = QVBoxLayout(content)
        layout.addWidget(QLabel("<b>Engine</b>"))
        layout.addWidget(self.state)
        layout.addLayout(buttons)
        layout.addWidget(facts_box)
        layout.addWidget(usage_box)
        layout.addWidget(self.machine_panel)
        layout.addStretch(1)
        session.state_changed.connect(self._state_changed)
        session.connected.connect(self.reload)
        self._state_changed(session.state, session.message)

    @property
    def _prune_controls(self) -> list[QWidget]:
        return [*self.prune_buttons.values(), self.prune_all]

    def control(self, command: EngineCommand) -> None:
        """Start, stop or restart the engine."""
        self.runner.run(f"{command.value.capitalize()} the engine", control_engine(command), self.controls)

    def reload(self) -> None:
        """Read the facts and the disk usage again (when the engine is running)."""
        if self.session.state is EngineState.RUNNING:
            self.runner.run("Engine information", self._load())

    def prune(self, kind: UsageKind) -> None:
        """Prune ``kind`` after confirmation; ``result`` says what was reclaimed."""
        if self.confirm(PRUNE_QUESTIONS[kind]):
            self.runner.run(f"Prune {kind.value.lower()}", self._prune([kind]), self._prune_controls)

    def prune_everything(self) -> None:
        """Prune stopped containers, unused networks, dangling images and build cache after confirmation."""
        if self.confirm(PRUNE_ALL_QUESTION):
            kinds = [UsageKind.CONTAINERS, UsageKind.IMAGES, UsageKind.BUILD_CACHE]
            self.runner.run("Prune all", self._prune(kinds, networks=True), self._prune_controls)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.reload()

    def _state_changed(self, state: EngineState, message: str) -> None:
        self.state.setText(f"State: {state.value} — {message}")
        if state is not EngineState.RUNNING:  # no stale facts while the engine is away
            for label in [*self.facts.values(), *(label for row in self.usage_labels.values() for label in row)]:
                label.setText("—")

    async def _load(self) -> None:
        client = self.session.client
        version, info, doc = await client.version(), await client.info(), await client.disk_usage()
        raw = info.raw
        runtimes = sorted(r for r in raw.get("Runtimes") or {} if r != raw.get("DefaultRuntime"))
        facts = {
            "Version": version.version,
            "API": f"{version.api_version} (oldest supported {version.min_api_version})",
            "Runtime": str(raw.get("DefaultRuntime") or "—") + (f" (also {', '.join(runtimes)})" if runtimes else ""),
            "Cgroups": f"v{info.cgroup_version}, driver {raw.get('CgroupDriver') or 'cgroupfs'}",
            "Storage": f"{info.driver}, data root {info.docker_root_dir}",
            "Host": f"{info.operating_system} ({info.architecture}), kernel {info.kernel_version}, {info.ncpu} CPUs, "
                    f"{size(info.mem_total)} memory",
            "Objects": f"{info.containers} containers ({info.containers_running} running), {info.images} images",
        }
        for name, text in facts.items():
            self.facts[name].setText(text)
        for usage in disk_usage(doc):
            for label, text in zip(self.usage_labels[usage.kind],
                                   (str(usage.count), str(usage.active), size(usage.size), size(usage.reclaimable)),
                                   strict=True):
                label.setText(text)

    async def _prune(self, kinds: list[UsageKind], *, networks: bool = False) -> None:
        client = self.session.client
        removed, reclaimed = 0, 0
        for kind in kinds:
            if kind is UsageKind.IMAGES:
                images = await client.prune_images()
                removed, reclaimed = removed + len(images.deleted), reclaimed + images.space_reclaimed
            elif kind is UsageKind.CONTAINERS:
                containers = await client.prune_containers()
                removed, reclaimed = removed + len(containers.deleted), reclaimed + containers.space_reclaimed
            elif kind is UsageKind.VOLUMES:
                volumes = await client.prune_volumes()
                removed, reclaimed = removed + len(volumes.deleted), reclaimed + volumes.space_reclaimed
            else:
                cache = await client.prune_build_cache()
                removed, reclaimed = removed + len(cache.caches_deleted), reclaimed + cache.space_reclaimed
        if networks:
            removed += len((await client.prune_networks()).deleted)
        what = kinds[0].value if len(kinds) == 1 and not networks else "Everything unused"
        self.result.setText(f"{what}: {removed} removed · Reclaimed {size(reclaimed)}")
        await self._load()
