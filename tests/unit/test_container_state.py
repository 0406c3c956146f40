"""The container lifecycle allows exactly Docker's transitions."""

from __future__ import annotations

import pytest

from backend.engine.containers.state import TRANSITIONS, ContainerState, ContainerStatus
from backend.engine.errors import Conflict


def test_run_pause_exit_remove() -> None:
    state = ContainerState()
    state.started(1234)
    assert state.to_docker()["Running"] and state.pid == 1234
    state.move(ContainerStatus.PAUSED)
    assert state.to_docker()["Paused"] and state.describe() == "Up (Paused)"
    state.move(ContainerStatus.RUNNING)
    state.exited(137, oom_killed=True)
    assert state.to_docker()["OOMKilled"] and state.describe() == "Exited (137)" and state.pid == 0
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
