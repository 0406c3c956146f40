"""Restart policies as Docker applies them: when a container is restarted, and after how long.

Docker's rules (``restartmanager`` in moby), which Berth follows:

- on an exit while the engine runs: ``always`` restarts; ``unless-stopped`` restarts unless the user
  stopped it; ``on-failure[:N]`` restarts on a non-zero code while fewer than N restarts were made (N=0:
  no limit); ``no`` never. A stop by the user (``docker stop``) never leads to a restart; ``docker kill``
  does not count as a stop by the user.
- the delay before a restart starts at 100 ms and doubles up to 1 minute; it goes back to 100 ms when the
  container ran for 10 seconds or more.
- at engine start-up, an exited container is started again if its policy is ``always``, or
  ``unless-stopped`` and the user had not stopped it (containers that were running keep running:
  Berth always restores them live).
"""

from __future__ import annotations

import datetime

from backend.engine.containers.create_request import RestartPolicy

FIRST_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0


def next_delay(previous: float, ran_for: float) -> float:
    """The delay before the next restart, given the previous delay and how long the container ran."""
    if ran_for >= RESET_AFTER or previous <= 0:
        return FIRST_DELAY
    return min(previous * 2, MAX_DELAY)


def restarts_on_exit(policy: RestartPolicy, exit_code: int, restart_count: int, manually_stopped: bool) -> bool:
    """Whether an exit with ``exit_code`` leads to a restart."""
    if manually_stopped:
        return False
    if policy.name in ("always", "unless-stopped"):
        return True
    if policy.name == "on-failure":
        limit = policy.maximum_retry_count
        return exit_code != 0 and (limit == 0 or restart_count < limit)
    return False


def restarts_at_engine_start(policy: RestartPolicy, manually_stopped: bool) -> bool:
    """Whether an exited container is started again when the engine starts."""
    return policy.name == "always" or (policy.name == "unless-stopped" and not manually_stopped)


def seconds_between(start: str, end: str) -> float:
    """Seconds from ``start`` to ``end`` (Docker's RFC 3339 timestamps); 0 when either cannot be read."""
    try:
        a = datetime.datetime.fromisoformat(start[:26].rstrip("Z"))
        b = datetime.datetime.fromisoformat(end[:26].rstrip("Z"))
    except ValueError:
        return 0.0
    return max((b - a).total_seconds(), 0.0)
