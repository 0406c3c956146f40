"""The app's live data: the four models, reloaded once per (re)connection and after each relevant event.

A burst of events asks for many reloads; :class:`Reloader` runs one at a time and at most one more after it,
so 500 events cost two list calls, not 500. Reload errors while the engine is down are left to the session's
state (the banner already says the engine is not running); others go to the action runner's banner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from PySide6.QtCore import QObject

from app.actions import ActionRunner
from app.engine_session import EngineSession
from app.formatting import describe_error
from app.models.containers import ContainerRow, ContainersModel
from app.models.images import ImageRow, ImagesModel
from app.models.networks import NetworkRow, NetworksModel
from app.models.volumes import VolumeRow, VolumesModel
from backend.api.errors import APIError, EngineUnreachable
from backend.api.types import Event

BURST_SPACING = 0.2  # seconds between the reloads of a burst of events (bench/gui.py)


class Reloader:
    """Coalesces reload requests for one coroutine function; errors go to ``on_error``."""

    def __init__(self, load: Callable[[], Awaitable[None]], on_error: Callable[[str], None]) -> None:
        self._load = load
        self._on_error = on_error
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def request(self) -> None:
        """Reload soon: now if idle, else once more after the reload under way."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.ensure_future(self._run())

    async def wait(self) -> None:
        """Wait until no reload is under way or pending (tests)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                await self._load()
            except EngineUnreachable:
                pass
            except APIError as exc:
                self._on_error(describe_error(exc))
            if not self._again:
                return
            await asyncio.sleep(BURST_SPACING)  # events keep coming: a few reloads a second, not one per event


class LiveData(QObject):
    """Owns the containers, images, volumes and networks models and keeps them current from ``session``."""

    def __init__(self, session: EngineSession, runner: ActionRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.containers = ContainersModel()
        self.images = ImagesModel()
        self.volumes = VolumesModel()
        self.networks = NetworksModel()
        report = runner.failed.emit
        self.reloaders: dict[str, Reloader] = {
            "container": Reloader(self._load_containers, report),
            "image": Reloader(self._load_images, report),
            "volume": Reloader(self._load_volumes, report),
            "network": Reloader(self._load_networks, report),
        }
        session.connected.connect(self.reload_all)
        session.engine_event.connect(self._on_event)

    def reload_all(self) -> None:
        """Reload every model."""
        for reloader in self.reloaders.values():
            reloader.request()

    async def settle(self) -> None:
        """Wait until no reload is under way (tests, screenshots)."""
        for reloader in self.reloaders.values():
            await reloader.wait()

    def _on_event(self, event: Event) -> None:
        if event.type in self.reloaders:
            self.reloaders[event.type].request()
        if event.type == "container" and event.action in ("create", "destroy"):
            self.reloaders["image"].request()  # the images' in-use counts
        if event.type == "network" and event.action in ("connect", "disconnect"):
            self.reloaders["network"].request()

    async def _load_containers(self) -> None:
        rows = await self.session.client.list_containers(all=True)
        self.containers.set_rows([ContainerRow.from_summary(r) for r in rows])

    async def _load_images(self) -> None:
        rows = await self.session.client.list_images()
        self.images.set_rows([ImageRow.from_summary(r) for r in rows])

    async def _load_volumes(self) -> None:
        rows = await self.session.client.list_volumes()
        self.volumes.set_rows([VolumeRow.from_volume(v) for v in rows])

    async def _load_networks(self) -> None:
        rows = await self.session.client.list_networks()
        self.networks.set_rows([NetworkRow.from_network(n) for n in rows])
