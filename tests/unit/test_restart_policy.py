"""Docker's restart-policy rules and backoff (backend.engine.containers.restart)."""

from __future__ import annotations

import pytest

from backend.engine.containers.create_request import RestartPolicy
from backend.engine.containers.restart import (
    MAX_DELAY,
    next_delay,
    restarts_at_engine_start,
    restarts_on_exit,
    seconds_between,
)


def test_backoff_doubles_to_a_minute_and_resets_after_ten_seconds() -> None:
    delays = [0.0]
    for _ in range(12):
        delays.append(next_delay(delays[-1], 0.5))
    assert delays[1:5] == [0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == MAX_DELAY and max(delays) == MAX_DELAY
    assert next_delay(MAX_DELAY, 10.0) == 0.1


@pytest.mark.parametrize(("policy", "code", "count", "stopped", "expected"), [
    (RestartPolicy("no"), 1, 0, False, False),
    (RestartPolicy("always"), 0, 5, False, True),
    (RestartPolicy("always"), 137, 0, True, False),
    (RestartPolicy("unless-stopped"), 0, 0, False, True),
    (RestartPolicy("unless-stopped"), 0, 0, True, False),
    (RestartPolicy("on-failure"), 0, 0, False, False),
    (RestartPolicy("on-failure"), 1, 100, False, True),
    (RestartPolicy("on-failure", 2), 1, 1, False, True),
    (RestartPolicy("on-failure", 2), 1, 2, False, False),
])
def test_restart_on_exit(policy: RestartPolicy, code: int, count: int, stopped: bool, expected: bool) -> None:
    assert restarts_on_exit(policy, code, count, stopped) is expected


def test_restart_at_engine_start() -> None:
    assert restarts_at_engine_start(RestartPolicy("always"), manually_stopped=True)
    assert restarts_at_engine_start(RestartPolicy("unless-stopped"), manually_stopped=False)
    assert not restarts_at_engine_start(RestartPolicy("unless-stopped"), manually_stopped=True)
    assert not restarts_at_engine_start(RestartPolicy("on-failure"), manually_stopped=False)
    assert not restarts_at_engine_start(RestartPolicy("no"), manually_stopped=False)


def test_seconds_between_docker_timestamps() -> None:
    assert seconds_between("2026-01-01T00:00:00.000000000Z", "2026-01-01T00:00:12.500000000Z") == 12.5
    assert seconds_between("0001-01-01T00:00:00Z", "garbage") == 0.0
