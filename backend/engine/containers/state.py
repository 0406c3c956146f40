"""A container's lifecycle as an Enum with explicit transitions, and its state as Docker reports it.

``ContainerState.move(to)`` is the only way to change status; an illegal move raises Conflict with a
message naming both states, so a request can never drive a container into an impossible state.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass, field
from typing import Any

from backend.api.units import human_duration
from backend.engine.errors import Conflict

ZERO_TIME = "0001-01-01T00:00:00Z"


class ContainerStatus(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"


_S = ContainerStatus
TRANSITIONS: dict[ContainerStatus, frozenset[ContainerStatus]] = {
    _S.CREATED: frozenset({_S.RUNNING, _S.EXITED, _S.REMOVING, _S.DEAD}),
    _S.RUNNING: frozenset({_S.PAUSED, _S.EXITED, _S.RESTARTING, _S.DEAD}),
    _S.PAUSED: frozenset({_S.RUNNING, _S.EXITED, _S.DEAD}),
    _S.RESTARTING: frozenset({_S.RUNNING, _S.EXITED, _S.REMOVING, _S.DEAD}),
    _S.EXITED: frozenset({_S.RUNNING, _S.RESTARTING, _S.REMOVING, _S.DEAD}),
    _S.REMOVING: frozenset({_S.DEAD}),
    _S.DEAD: frozenset({_S.REMOVING}),
}


class HealthStatus(enum.Enum):
    """A health-checked container's ``State.Health.Status``."""

    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


HEALTH_LOG_SIZE = 5


@dataclass(frozen=True)
class ProbeResult:
    """One health probe, Docker's ``HealthcheckResult`` (times in Docker's RFC 3339 form)."""

    start: str
    end: str
    exit_code: int
    output: str

    def to_docker(self) -> dict[str, Any]:
        return {"Start": self.start, "End": self.end, "ExitCode": self.exit_code, "Output": self.output}


@dataclass
class Health:
    """``State.Health``: the status, the failing streak and the last five probe results (oldest first)."""

    status: HealthStatus = HealthStatus.STARTING
    failing_streak: int = 0
    log: list[ProbeResult] = field(default_factory=list)

    def record(self, result: ProbeResult, retries: int, in_start_period: bool) -> bool:
        """Add ``result`` by dockerd's rule: a success makes it healthy and ends the streak; a failure counts
        unless the container is still starting inside its start period, and ``retries`` counted failures in a
        row make it unhealthy. Returns whether the status changed."""
        before = self.status
        self.log = [*self.log, result][-HEALTH_LOG_SIZE:]
        if result.exit_code == 0:
            self.failing_streak = 0
            self.status = HealthStatus.HEALTHY
        elif not (self.status is HealthStatus.STARTING and in_start_period):
            self.failing_streak += 1
            if self.failing_streak >= retries:
                self.status = HealthStatus.UNHEALTHY
        return self.status is not before

    def to_docker(self) -> dict[str, Any]:
        return {"Status": self.status.value, "FailingStreak": self.failing_streak,
                "Log": [r.to_docker() for r in self.log]}

    @classmethod
    def from_docker(cls, doc: dict[str, Any]) -> Health:
        """Raises ValueError/KeyError/TypeError for a malformed document."""
        return cls(HealthStatus(doc["Status"]), int(doc["FailingStreak"]),
                   [ProbeResult(str(r["Start"]), str(r["End"]), int(r["ExitCode"]), str(r["Output"]))
                    for r in doc["Log"]])


def now() -> str:
    """The current time in Docker's RFC 3339 form with nanoseconds (padded from microseconds)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def _parse(stamp: str) -> datetime.datetime:
    """A Docker RFC 3339 timestamp (nanoseconds allowed); the zero time when it cannot be read."""
    try:
        return datetime.datetime.fromisoformat(stamp[:26].rstrip("Z")).replace(tzinfo=datetime.UTC)
    except ValueError:
        return datetime.datetime(1, 1, 1, tzinfo=datetime.UTC)


@dataclass
class ContainerState:
    """What ``docker inspect`` shows under ``State`` (plus the restart count)."""

    status: ContainerStatus = ContainerStatus.CREATED
    pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    restart_count: int = 0
    manually_stopped: bool = False
    restart_delay: float = 0.0
    health: Health | None = None

    def health_status(self) -> str:
        """The ``health`` filter's value: ``none`` without a health check."""
        return self.health.status.value if self.health is not None else "none"

    def move(self, to: ContainerStatus) -> None:
        """Change status. Raises Conflict for a transition the lifecycle does not allow."""
        if to is self.status:
            return
        if to not in TRANSITIONS[self.status]:
            raise Conflict(f"cannot move a container from {self.status.value} to {to.value}")
        self.status = to

    def started(self, pid: int) -> None:
        self.move(ContainerStatus.RUNNING)
        self.pid = pid
        self.started_at = now()
        self.exit_code = 0
        self.oom_killed = False
        self.error = ""

    def exited(self, code: int, oom_killed: bool = False, finished_at: str | None = None) -> None:
        self.move(ContainerStatus.EXITED)
        self.pid = 0
        self.exit_code = code
        self.oom_killed = oom_killed
        self.finished_at = finished_at or now()

    def describe(self, at: datetime.datetime | None = None) -> str:
        """The ``Status`` column of ``docker ps``, as dockerd words it (``Up 3 seconds``, ``Exited (137)
        5 minutes ago``, ``Restarting (1) 2 seconds ago``, ``Created``...)."""
        at = at or datetime.datetime.now(datetime.UTC)
        up = human_duration((at - _parse(self.started_at)).total_seconds())
        since_exit = human_duration((at - _parse(self.finished_at)).total_seconds())
        s = self.status
        if s is ContainerStatus.RUNNING and self.health is not None:
            health = "health: starting" if self.health.status is HealthStatus.STARTING else self.health.status.value
            return f"Up {up} ({health})"
        if s is ContainerStatus.RUNNING:
            return f"Up {up}"
        if s is ContainerStatus.PAUSED:
            return f"Up {up} (Paused)"
        if s is ContainerStatus.RESTARTING:
            return f"Restarting ({self.exit_code}) {since_exit} ago"
        if s is ContainerStatus.REMOVING:
            return "Removal In Progress"
        if s is ContainerStatus.DEAD:
            return "Dead"
        if s is ContainerStatus.CREATED or self.finished_at == ZERO_TIME:
            return "Created"
        return f"Exited ({self.exit_code}) {since_exit} ago"

    def to_docker(self) -> dict[str, Any]:
        s = self.status
        health = {"Health": self.health.to_docker()} if self.health is not None else {}
        return {
            "Status": s.value,
            "Running": s in (ContainerStatus.RUNNING, ContainerStatus.PAUSED, ContainerStatus.RESTARTING),
            "Paused": s is ContainerStatus.PAUSED, "Restarting": s is ContainerStatus.RESTARTING,
            "OOMKilled": self.oom_killed, "Dead": s is ContainerStatus.DEAD, "Pid": self.pid,
            "ExitCode": self.exit_code, "Error": self.error, "StartedAt": self.started_at,
            "FinishedAt": self.finished_at,
        } | health

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status.value, "pid": self.pid, "exit_code": self.exit_code,
                "oom_killed": self.oom_killed, "error": self.error, "started_at": self.started_at,
                "finished_at": self.finished_at, "restart_count": self.restart_count,
                "manually_stopped": self.manually_stopped, "restart_delay": self.restart_delay,
                "health": self.health.to_docker() if self.health is not None else None}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ContainerState:
        """Raises ValueError/KeyError/TypeError for a malformed document."""
        return cls(status=ContainerStatus(doc["status"]), pid=int(doc["pid"]), exit_code=int(doc["exit_code"]),
                   oom_killed=bool(doc["oom_killed"]), error=str(doc["error"]), started_at=str(doc["started_at"]),
                   finished_at=str(doc["finished_at"]), restart_count=int(doc.get("restart_count", 0)),
                   manually_stopped=bool(doc.get("manually_stopped", False)),
                   restart_delay=float(doc.get("restart_delay", 0.0)),
                   health=Health.from_docker(doc["health"]) if doc.get("health") else None)
