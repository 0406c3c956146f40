"""The harness's results: measures with samples per system, their statistics, the targets of issues 2-9, and
the Markdown and PNG outputs."""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

BERTH = "berthd"
PEERS = ("dockerd", "podman", "runc")
BEGIN, END = "<!-- bench:begin (written by bench/run.py) -->", "<!-- bench:end -->"


@dataclass
class Measure:
    """One figure of one scenario: ``samples[system]`` in ``unit``; ``how`` says how it was measured."""

    key: str
    label: str
    unit: str
    how: str
    higher_is_better: bool = False
    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, system: str, value: float) -> None:
        self.samples.setdefault(system, []).append(value)

    def median(self, system: str) -> float | None:
        """The median of ``system``'s samples, None without samples."""
        values = self.samples.get(system)
        return statistics.median(values) if values else None

    def ratio(self, peer: str) -> float | None:
        """Berth's median over ``peer``'s, None if either is missing."""
        berth, other = self.median(BERTH), self.median(peer)
        return berth / other if berth is not None and other else None

    def cell(self, system: str) -> str:
        """``median (min-max)`` for the table, ``-`` without samples."""
        values = self.samples.get(system)
        if not values:
            return "-"
        median = statistics.median(values)
        if len(values) == 1:
            return _num(median)
        return f"{_num(median)} ({_num(min(values))}-{_num(max(values))})"


@dataclass
class Target:
    """A performance target of an earlier issue: a ratio to ``peer`` (or an absolute figure if ``peer`` is
    None) of measure ``key`` that must stay at or below ``limit`` (at or above for ``at_least``)."""

    issue: int
    text: str
    key: str
    peer: str | None
    limit: float
    at_least: bool = False

    def measured(self, measures: dict[str, Measure]) -> float | None:
        measure = measures.get(self.key)
        if measure is None:
            return None
        return measure.ratio(self.peer) if self.peer else measure.median(BERTH)

    def met(self, value: float) -> bool:
        return value >= self.limit if self.at_least else value <= self.limit


TARGETS = (
    Target(2, "berth-runtime's full cycle (warm fork server) at or below runc's", "runtime.fs", "runc", 1.0),
    Target(3, "pull of the 200 MB 5-layer image at or below dockerd's time", "pull", "dockerd", 1.0),
    Target(4, "`docker run --rm busybox true` (docker CLI) at most 0.5x dockerd", "run.docker", "dockerd", 0.5),
    Target(4, "`berth run --rm busybox true` at most dockerd's `docker run`", "run.own", "dockerd", 1.0),
    Target(4, "idle RSS at most half of dockerd + containerd", "idle.rss", "dockerd", 0.5),
    Target(5, "first answer after `run -d -p` returns under 50 ms", "net.first", None, 50.0),
    Target(5, "host -> container TCP throughput at least 0.9x dockerd", "net.h2c", "dockerd", 0.9, at_least=True),
    Target(5, "container -> container TCP throughput at least 0.9x dockerd", "net.c2c", "dockerd", 0.9,
           at_least=True),
    Target(6, "10-step build, cold, at or below dockerd's classic builder", "build.cold", "dockerd", 1.0),
    Target(6, "10-step build, fully cached, at or below dockerd's classic builder", "build.cached", "dockerd", 1.0),
    Target(6, "fully cached rebuild under 1 s", "build.cached", None, 1.0),
    Target(7, "compose up -d to all healthy at or below docker-compose on dockerd", "compose.up", "dockerd", 1.0),
    Target(7, "compose down at or below docker-compose on dockerd", "compose.down", "dockerd", 1.0),
    Target(8, "GUI cold start to 200 containers under 1.5 s", "gui.cold start (s)", None, 1.5),
    Target(8, "GUI sort of 2,000 rows under 100 ms", "gui.sort 2,000 rows (ms)", None, 100.0),
    Target(8, "GUI memory under 200 MB", "gui.app RSS (MB)", None, 200.0),
    Target(8, "GUI event loop gap under a burst of 500 events under 50 ms", "gui.event loop gap (ms)", None, 50.0),
)


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if value < 1 else f"{value:.2f}"


def machine() -> str:
    """CPU model and count, memory, kernel, distribution and the load average, on one line."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    distro = next((line.split("=", 1)[1].strip('"') for line in Path("/etc/os-release").read_text().splitlines()
                   if line.startswith("PRETTY_NAME=")), "Linux")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} x {model}, {mem_kb / 1024 / 1024:.1f} GiB RAM, kernel {platform.release()}, "
            f"{distro}; load average at the end {load}")


def table(measures: list[Measure]) -> str:
    """The Markdown table of every measure: median (min-max) per system and Berth's ratio to each peer."""
    peers = [p for p in PEERS if any(p in m.samples for m in measures)]
    head = ["Scenario", "Unit", "Berth", *peers, *(f"Berth/{p}" for p in peers)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in measures:
        ratios = []
        for peer in peers:
            ratio = m.ratio(peer)
            ratios.append(f"{ratio:.2f}x" if ratio is not None else "-")
        direction = "higher is better" if m.higher_is_better else "lower is better"
        lines.append(f"| {m.label} | {m.unit}, {direction} | {m.cell(BERTH)} | "
                     + " | ".join([*(m.cell(p) for p in peers), *ratios]) + " |")
    return "\n".join(lines)


def targets_table(measures: list[Measure]) -> str:
    """Every target of the earlier issues with the measured figure and whether it is met."""
    by_key = {m.key: m for m in measures}
    lines = ["| Issue | Target | Measured | Met |", "|---|---|---|---|"]
    for target in TARGETS:
        value = target.measured(by_key)
        if value is None:
            shown, met = "not measured in this run", "-"
        else:
            unit = f"x {target.peer}" if target.peer else by_key[target.key].unit
            shown, met = f"{_num(value)} {unit}", "yes" if target.met(value) else "**no**"
        lines.append(f"| {target.issue} | {target.text} | {shown} | {met} |")
    lines.append("| 9 | machine: boot-to-ready, forwarded API latency, port within 50 ms of start | "
                 "bench/machine.py, not part of this harness's run | - |")
    return "\n".join(lines)


def markdown(measures: list[Measure], errors: list[str], reps: str, chart: str) -> str:
    """The generated part of docs/benchmarks.md."""
    how = "\n".join(f"- **{m.label}**: {m.how}" for m in measures)
    failed = "\n".join(f"- {e}" for e in errors) or "- none"
    return f"""{BEGIN}
Run on {time.strftime('%Y-%m-%d %H:%M %Z')}: {machine()}. {reps}

Each cell is the median, in brackets the range (min-max) of the samples; Berth/peer is the ratio of the
medians (for throughput higher is better, for everything else lower). Systems alternate within every repetition.

{table(measures)}

![Berth / peer ratios]({chart})

### Targets of the earlier issues

{targets_table(measures)}

### How each figure is measured

{how}

### Scenarios that failed in this run

{failed}
{END}"""


def write_markdown(path: Path, generated: str) -> None:
    """Replace the generated part of ``path`` (between the markers), keeping the text around it; a new file
    holds only the generated part under a title."""
    if path.exists() and BEGIN in (text := path.read_text()) and END in text:
        head, rest = text.split(BEGIN, 1)
        path.write_text(head + generated + rest.split(END, 1)[1])
    else:
        path.write_text(f"# Benchmarks\n\n{generated}\n")


def chart(measures: list[Measure], path: Path) -> None:
    """A horizontal bar chart of Berth's ratio to each peer (log scale): below 1 means Berth is ahead
    (throughput ratios are inverted for it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: list[tuple[str, str, float]] = []
    for m in measures:
        for peer in PEERS:
            ratio = m.ratio(peer)
            if ratio:
                rows.append((m.label, peer, 1 / ratio if m.higher_is_better else ratio))
    colours = {"dockerd": "#1d63ed", "podman": "#892ca0", "runc": "#e07b00"}
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1.5))
    labels = [f"{label} — vs {peer}" for label, peer, _ in rows]
    ax.barh(range(len(rows)), [r for *_, r in rows], color=[colours[p] for _, p, _ in rows])
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("Berth / peer (throughput: peer / Berth); below 1 = Berth ahead")
    ax.set_title(f"Berth against dockerd, podman and runc ({time.strftime('%Y-%m-%d')})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

