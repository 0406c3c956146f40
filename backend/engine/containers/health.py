"""Health checks as dockerd runs them: one probe loop per running container.

The check comes from the create body's ``Healthcheck`` merged field by field over the image's (a zero
field takes the image's value); ``Test`` is ``["CMD", cmd, args...]``, ``["CMD-SHELL", "text"]`` (run
by the container's shell, ``/bin/sh -c`` by default) or ``["NONE"]`` (no check). Durations are
nanoseconds; zero means Docker's defaults (interval 30 s, timeout 30 s, start period 0, 3 retries).

Every interval the probe runs through the OCI runtime's ``exec`` (the container's env, user and working
directory, as its own process has them), its stdout and stderr captured up to 4 KiB. A probe that
outlives the timeout is killed (by the pid the runtime writes) and recorded as exit code -1 with
dockerd's message. Results go to ``State.Health`` (see ``state.Health.record`` for the status rule).
A loop runs only while the container runs unpaused; the container service starts and stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backend.engine.containers.restart import seconds_between
from backend.engine.containers.state import Health, ProbeResult, now

DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
MAX_OUTPUT = 4096
OUTPUT_GRACE = 0.2
"""Seconds to wait for the rest of a probe's output once it exited (a child it left may hold the pipe)."""
DEFAULT_SHELL = ("/bin/sh", "-c")


@dataclass(frozen=True)
class HealthConfig:
    """A container's effective health check, in seconds."""

    argv: tuple[str, ...]
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    start_period: float = 0.0
    retries: int = DEFAULT_RETRIES


def health_config(body: Mapping[str, Any], image_config: Mapping[str, Any]) -> HealthConfig | None:
    """The check of a container with create ``body`` and image config document ``image_config``, merged as
    dockerd merges them; None for no check, ``NONE``, or a ``Test`` form dockerd ignores. Never raises
    (the body was validated at create)."""
    image = image_config.get("config") or {}
    mine, theirs = body.get("Healthcheck") or {}, image.get("Healthcheck") or {}
    test = list(mine.get("Test") or theirs.get("Test") or [])

    def pick(key: str) -> Any:
        return mine.get(key) or theirs.get(key) or 0

    if test[:1] == ["CMD"]:
        argv = test[1:]
    elif test[:1] == ["CMD-SHELL"]:
        argv = [*(body.get("Shell") or image.get("Shell") or DEFAULT_SHELL), *test[1:]]
    else:
        return None
    if not argv:
        return None
    return HealthConfig(tuple(argv), interval=pick("Interval") / 1e9 or DEFAULT_INTERVAL,
                        timeout=pick("Timeout") / 1e9 or DEFAULT_TIMEOUT, start_period=pick("StartPeriod") / 1e9,
                        retries=pick("Retries") or DEFAULT_RETRIES)


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration`` text for whole milliseconds and up: ``200ms``, ``1s``, ``1.5s``, ``1m30s``."""
    ms = round(seconds * 1000)
    if ms < 1000:
        return f"{ms}ms"
    minutes, ms = divmod(ms, 60_000)
    hours, minutes = divmod(minutes, 60)
    text = f"{ms / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


@dataclass(frozen=True)
class ProbeTarget:
    """Where probes run: a container of an OCI runtime; ``pid_file`` is the runtime's ``--pid-file`` for
    the probe (one probe at a time per container)."""

    runtime: str
    runtime_root: str
    container_id: str
    pid_file: str

    async def probe(self, argv: Sequence[str], timeout: float) -> ProbeResult:
        """Run ``argv`` in the container; kill it after ``timeout`` seconds. Never raises (a runtime that
        cannot be run is a failed probe with its error); a cancelled probe is killed."""
        start = now()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pid_file)  # a stale pid must never be killed
        output = bytearray()
        try:
            proc = await asyncio.create_subprocess_exec(
                self.runtime, "--root", self.runtime_root, "exec", "--pid-file", self.pid_file, self.container_id,
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT)
        except OSError as exc:
            return ProbeResult(start, now(), -1, f"cannot run the health check: {exc}")
        assert proc.stdout is not None
        reading = asyncio.ensure_future(_read_capped(proc.stdout, output))
        try:
            code = await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            code = None
        finally:
            if proc.returncode is None:
                self._kill(proc)
                await proc.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reading), OUTPUT_GRACE)
            reading.cancel()
        if code is None:
            return ProbeResult(start, now(), -1, f"Health check exceeded timeout ({go_duration(timeout)})")
        return ProbeResult(start, now(), code, output.decode(errors="replace"))

    def _kill(self, proc: asyncio.subprocess.Process) -> None:
        """SIGKILL the probe in the container and what it started (the runtime then exits with its status),
        or the runtime itself when it has not said the probe's pid yet."""
        try:
            with open(self.pid_file) as f:
                pids = _process_tree(int(f.read().strip()))
        except (OSError, ValueError):
            pids = [proc.pid]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it, from the parent links in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rpartition(")")[2].split()[1])
            children.setdefault(parent, []).append(int(entry))
    tree = [pid]
    for member in tree:  # grows while walked: breadth first
        tree += children.get(member, [])
    return tree


async def _read_capped(reader: asyncio.StreamReader, into: bytearray) -> None:
    """Read to EOF, keeping the first MAX_OUTPUT bytes (the rest is drained so the writer never blocks)."""
    while chunk := await reader.read(1 << 16):
        into += chunk[:MAX_OUTPUT - len(into)]


Recorded = Callable[[bool], None]
"""Called after each probe result is added to the container's Health, with whether the status changed."""


class HealthChecks:
    """The probe loops of running containers, one task each (by container ID)."""

    def __init__(self) -> None:
        self._loops: dict[str, asyncio.Task[None]] = {}

    def run(self, container_id: str, config: HealthConfig, health: Health, started_at: str, target: ProbeTarget,
            recorded: Recorded) -> None:
        """Probe every ``config.interval`` from now on into ``health``, replacing a loop already running.
        ``started_at`` (the container's start) measures the start period."""
        self.stop(container_id)
        self._loops[container_id] = asyncio.ensure_future(self._loop(config, health, started_at, target, recorded))

    def stop(self, container_id: str) -> None:
        """No more probes for the container; a probe under way is killed and its result dropped."""
        loop = self._loops.pop(container_id, None)
        if loop is not None:
            loop.cancel()

    async def close(self) -> None:
        """Stop every loop (berthd shuts down; the Health recorded so far is kept)."""
        loops = list(self._loops.values())
        self._loops.clear()
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)

    @staticmethod
    async def _loop(config: HealthConfig, health: Health, started_at: str, target: ProbeTarget,
                    recorded: Recorded) -> None:
        while True:
            await asyncio.sleep(config.interval)
            result = await target.probe(config.argv, config.timeout)
            in_start_period = seconds_between(started_at, result.start) < config.start_period
            recorded(health.record(result, config.retries, in_start_period))
