"""The container lifecycle allows exactly Docker's transitions."""

from __future__ import annotations

import datetime

import pytest

from backend.api.units import human_duration
from backend.engine.containers.state import TRANSITIONS, ContainerState, ContainerStatus
from backend.engine.errors import Conflict


def test_run_pause_exit_remove() -> None:
    state = ContainerState()
    state.started(1234)
    assert state.to_docker()["Running"] and state.pid == 1234
    state.move(ContainerStatus.PAUSED)
    assert state.to_docker()["Paused"] and state.describe() == "Up Less than a second (Paused)"
    state.move(ContainerStatus.RUNNING)
    state.exited(137, oom_killed=True)
    assert state.to_docker()["OOMKilled"] and state.pid == 0
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5, seconds=1)
    assert state.describe(later) == "Exited (137) 5 minutes ago"
    state.move(ContainerStatus.REMOVING)
    assert ContainerState.from_json(state.to_json()) == state


@pytest.mark.parametrize("start, to", [
    (ContainerStatus.CREATED, ContainerStatus.PAUSED),
    (ContainerStatus.EXITED, ContainerStatus.PAUSED),
    (ContainerStatus.REMOVING, ContainerStatus.RUNNING),
    (ContainerStatus.DEAD, ContainerStatus.RUNNING),
])
def test_illegal_moves_are_conflicts(start: ContainerStatus, to: ContainerStatus) -> None:
    state = ContainerState(status=start)
    with pytest.raises(Conflict, match=f"from {start.value} to {to.value}"):
        state.move(to)
    assert state.status is start


def test_every_state_has_a_way_out_except_through_removal() -> None:
    assert set(TRANSITIONS) == set(ContainerStatus)
    assert all(TRANSITIONS[s] for s in ContainerStatus)


@pytest.mark.parametrize("seconds, words", [
    (0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (61, "About a minute"),
    (3599, "59 minutes"), (3600, "About an hour"), (5 * 3600, "5 hours"), (3 * 86400, "3 days"),
    (20 * 86400, "2 weeks"), (90 * 86400, "3 months"), (800 * 86400, "2 years"),
])
def test_human_durations_as_docker_words_them(seconds: float, words: str) -> None:
    assert human_duration(seconds) == words


def test_created_and_restarting_status_lines() -> None:
    assert ContainerState().describe() == "Created"
    state = ContainerState()
    state.started(1)
    state.exited(2)
    state.move(ContainerStatus.RESTARTING)
    assert state.describe().startswith("Restarting (2) ") and state.to_docker()["Restarting"]
