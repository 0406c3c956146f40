"""A container's Stats tab: live CPU %, memory (used of limit), network and block I/O rates as line charts.

The numbers come from ``client.stats(ref, stream=True)`` (one sample a second) through pure functions:
:func:`cpu_percent` as ``docker stats`` computes it from two ``cpu_stats`` documents, :func:`rate` from two
counter readings, :func:`stats_point` for a whole sample. The stream runs only while the tab is shown and
the container runs; otherwise the tab says "Not running".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PySide6.QtGui import QHideEvent, QShowEvent
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from app import formatting
from app.widgets.charts import LineChart
from backend.api.client import EngineClient
from backend.api.errors import APIError
from backend.api.types import StatsSample

DEFAULT_INTERVAL = 1.0  # seconds between samples when their "read" times do not say


@dataclass(frozen=True)
class StatsPoint:
    """One point of every chart: CPU %, memory in bytes, rates in bytes per second."""

    cpu_percent: float
    memory_used: int
    memory_limit: int
    net_rx_rate: float
    net_tx_rate: float
    block_read_rate: float
    block_write_rate: float
    pids: int


def _number(doc: Mapping[str, Any], key: str) -> int:
    value = doc.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def cpu_percent(previous: Mapping[str, Any], current: Mapping[str, Any]) -> float:
    """CPU % between two ``cpu_stats`` documents as ``docker stats`` computes it: the container's CPU time
    delta over the host's, times the online CPUs, times 100. 0.0 when ``previous`` has no reading (the
    first sample) or either delta is not positive (a counter reset)."""
    usage, previous_usage = current.get("cpu_usage") or {}, previous.get("cpu_usage") or {}
    cpu_delta = _number(usage, "total_usage") - _number(previous_usage, "total_usage")
    system_delta = _number(current, "system_cpu_usage") - _number(previous, "system_cpu_usage")
    cpus = _number(current, "online_cpus") or len(usage.get("percpu_usage") or []) or 1
    if not _number(previous, "system_cpu_usage") or cpu_delta <= 0 or system_delta <= 0:
        return 0.0
    return cpu_delta / system_delta * cpus * 100.0


def rate(previous: int, current: int, seconds: float) -> float:
    """Bytes per second between two readings of a counter ``seconds`` apart; 0.0 if the counter went back
    (the container restarted) or no time passed."""
    if seconds <= 0 or current < previous:
        return 0.0
    return (current - previous) / seconds


def stats_point(previous: StatsSample | None, current: StatsSample) -> StatsPoint:
    """The chart values for ``current``: CPU over the previous sample (over the daemon's ``precpu_stats``
    for the first), rates over the time between the two samples' ``read`` stamps (zero for the first)."""
    cpu_now = current.raw.get("cpu_stats") or {}
    cpu_before = (previous.raw.get("cpu_stats") if previous else current.raw.get("precpu_stats")) or {}
    seconds = 0.0
    if previous is not None:
        now, before = (formatting.parse_timestamp(str(s.raw.get("read", ""))) for s in (current, previous))
        seconds = now - before if now is not None and before is not None and now > before else DEFAULT_INTERVAL

    def per_second(field: str) -> float:
        return rate(getattr(previous, field), getattr(current, field), seconds) if previous else 0.0

    return StatsPoint(cpu_percent(cpu_before, cpu_now), current.memory_usage, current.memory_limit,
                      per_second("net_rx"), per_second("net_tx"), per_second("block_read"),
                      per_second("block_write"), current.pids)


class StatsTab(QWidget):
    """Four live charts of one container. :meth:`set_running` tells it whether the container runs;
    ``samples`` counts the samples received since the stream (re)started."""

    def __init__(self, client: EngineClient, container_id: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._client, self._container_id = client, container_id
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self.samples = 0
        self.status = QLabel("Not running")
        self.cpu = LineChart("CPU", ["CPU"], lambda v: f"{v:.1f}%" if v < 10 else f"{v:.0f}%")
        self.memory = LineChart("Memory", ["used"], lambda v: formatting.size(int(v)), minimum_max=1e6)
        self.network = LineChart("Network", ["rx", "tx"], formatting.byte_rate, minimum_max=1e3)
        self.block_io = LineChart("Block I/O", ["read", "write"], formatting.byte_rate, minimum_max=1e3)
        grid = QGridLayout()
        for number, chart in enumerate((self.cpu, self.memory, self.network, self.block_io)):
            grid.addWidget(chart, number // 2, number % 2)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addLayout(grid, 1)

    @property
    def charts(self) -> tuple[LineChart, ...]:
        return self.cpu, self.memory, self.network, self.block_io

    def set_running(self, running: bool) -> None:
        """The container started or stopped: start the stream (if the tab is shown) or stop it."""
        self._running = running
        if running and self.isVisible():
            self.start()
        elif not running:
            self.stop()
            self.status.setText("Not running")

    def start(self) -> None:
        """(Re)start the stream with empty charts, if the container runs and no stream is under way."""
        if not self._running or (self._task is not None and not self._task.done()):
            return
        for chart in self.charts:
            chart.clear()
        self.samples = 0
        self.status.setText("Waiting for the first sample…")
        self._task = asyncio.ensure_future(self._stream())

    def stop(self) -> None:
        """Stop the stream (closes the connection); the charts keep what they show."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.start()

    def hideEvent(self, event: QHideEvent) -> None:
        self.stop()
        super().hideEvent(event)

    async def _stream(self) -> None:
        previous: StatsSample | None = None
        with contextlib.suppress(asyncio.CancelledError):
            try:
                async for sample in self._client.stats(self._container_id, stream=True):
                    self._show(stats_point(previous, sample))
                    previous = sample
            except (APIError, OSError) as exc:
                self.status.setText(formatting.describe_error(exc))
                return
            self.status.setText("Not running")

    def _show(self, point: StatsPoint) -> None:
        self.samples += 1
        self.cpu.add(point.cpu_percent)
        self.memory.note = f"of {formatting.size(point.memory_limit)}" if point.memory_limit else ""
        self.memory.add(point.memory_used)
        self.network.add(point.net_rx_rate, point.net_tx_rate)
        self.block_io.add(point.block_read_rate, point.block_write_rate)
        self.status.setText(f"CPU {point.cpu_percent:.1f}% · memory {formatting.size(point.memory_used)}"
                            f"{' of ' + formatting.size(point.memory_limit) if point.memory_limit else ''}"
                            f" · {point.pids} processes")
