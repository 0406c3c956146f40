"""A small live line chart drawn with QPainter (PySide6-Essentials has no QtCharts).

:class:`LineChart` keeps a rolling window of samples for one or more series (``rx``/``tx``), draws them
over a grid scaled to a "nice" maximum (1, 2 or 5 times a power of ten), labels the value axis with a formatter (human
units) and the time axis from "60 s" to "now", and shows the newest values in its title line.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPalette, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

SERIES_COLOURS = ("#2f7ed8", "#d99a00", "#2e9e44", "#d23c3c")


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten that is at least ``value`` (``value`` > 0)."""
    exponent = math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        if step * 10.0 ** exponent >= value * (1 - 1e-12):
            return step * 10.0 ** exponent
    return 10.0 ** (exponent + 1)


class LineChart(QWidget):
    """A chart of ``len(series)`` named lines over the last ``capacity`` samples.

    ``format_value`` labels the axis and the newest values; the axis maximum is at least ``minimum_max``
    (so an idle container's chart is flat, not noise scaled up). ``note`` is extra text for the title line
    (``of 2GB``)."""

    def __init__(self, title: str, series: Sequence[str], format_value: Callable[[float], str], *,
                 minimum_max: float = 1.0, capacity: int = 60, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.series = tuple(series)
        self.format_value = format_value
        self.minimum_max = minimum_max
        self.capacity = capacity
        self.note = ""
        self._values: list[deque[float]] = [deque(maxlen=capacity) for _ in self.series]
        self.setMinimumSize(220, 130)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(360, 170)

    def add(self, *values: float) -> None:
        """Append one sample (one value per series); the oldest falls out after ``capacity``."""
        if len(values) != len(self.series):
            raise ValueError(f"{self.title}: {len(self.series)} values expected, got {len(values)}")
        for store, value in zip(self._values, values, strict=True):
            store.append(max(0.0, value))
        self.update()

    def clear(self) -> None:
        """Forget every sample."""
        for store in self._values:
            store.clear()
        self.note = ""
        self.update()

    def values(self, series: int = 0) -> list[float]:
        """The samples of ``series``, oldest first."""
        return list(self._values[series])

    def latest(self, series: int = 0) -> float | None:
        """The newest sample of ``series``, None before the first."""
        return self._values[series][-1] if self._values[series] else None

    def axis_max(self) -> float:
        """The value at the top of the plot."""
        highest = max((max(store) for store in self._values if store), default=0.0)
        return nice_ceiling(max(highest, self.minimum_max))

    def title_parts(self) -> list[tuple[str, str | None]]:
        """The title line as ``(text, colour)`` parts: the chart's name, the newest value of each series (in
        the series' colour when there are several) and the note."""
        parts: list[tuple[str, str | None]] = [(self.title, None)]
        for number, name in enumerate(self.series):
            value = self.latest(number)
            shown = "-" if value is None else self.format_value(value)
            if len(self.series) > 1:
                parts.append((f"■ {name} {shown}", SERIES_COLOURS[number % len(SERIES_COLOURS)]))
            else:
                parts.append((shown, None))
        return [*parts, (self.note, None)] if self.note else parts

    def title_text(self) -> str:
        """The title line as plain text."""
        return "  ".join(text for text, _ in self.title_parts())

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        text_colour = palette.color(QPalette.ColorRole.WindowText)
        grid_colour = QColor(text_colour)
        grid_colour.setAlpha(40)
        metrics = painter.fontMetrics()
        line = metrics.height()
        top_value = self.axis_max()
        labels = [self.format_value(top_value * share) for share in (1.0, 0.5, 0.0)]
        left = max(metrics.horizontalAdvance(label) for label in labels) + 8
        plot = QRectF(left, line * 1.6, self.width() - left - 8, self.height() - line * 3.0)
        painter.fillRect(self.rect(), palette.color(QPalette.ColorRole.Base))
        painter.setPen(text_colour)
        x = 4.0
        for text, colour in self.title_parts():
            painter.setPen(QColor(colour) if colour else text_colour)
            painter.drawText(QRectF(x, 2, self.width() - x, line), Qt.AlignmentFlag.AlignLeft, text)
            x += metrics.horizontalAdvance(text + "  ")
        painter.setPen(text_colour)
        if plot.width() <= 0 or plot.height() <= 0:
            return
        for share, label in zip((1.0, 0.5, 0.0), labels, strict=True):
            y = plot.bottom() - share * plot.height()
            painter.setPen(QPen(grid_colour, 1))
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(text_colour)
            painter.drawText(QRectF(0, y - line / 2, left - 4, line),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, label)
        below = QRectF(plot.left(), plot.bottom() + 2, plot.width(), line)
        painter.drawText(below, Qt.AlignmentFlag.AlignLeft, f"{self.capacity} s")
        painter.drawText(below, Qt.AlignmentFlag.AlignRight, "now")
        step = plot.width() / max(self.capacity - 1, 1)
        for number, store in enumerate(self._values):
            start = plot.right() - (len(store) - 1) * step
            points = [QPointF(start + i * step, plot.bottom() - min(v / top_value, 1.0) * plot.height())
                      for i, v in enumerate(store)]
            painter.setPen(QPen(QColor(SERIES_COLOURS[number % len(SERIES_COLOURS)]), 1.6))
            painter.drawPolyline(QPolygonF(points))
        painter.end()
